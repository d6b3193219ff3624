using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>
/// A frozen projection y = x Wᵀ + b whose weight may be stored in any form: dense (fp32/bf16/fp16) or quantised
/// (int8, NF4). <see cref="Peft.LoraLinear"/> wraps any of them unchanged, as PEFT's lora.Linear wraps nn.Linear and
/// the bitsandbytes layers alike.
/// </summary>
/// <remarks>
/// The base is never trained: no gradient w.r.t. its weight exists, only w.r.t. its input. A quantised layer
/// dequantises inside forward and again inside backward, so the full-precision weight never outlives one call.
/// </remarks>
public abstract class FrozenLinear : nn.Module<Tensor, Tensor>
{
    /// <summary>A projection from <paramref name="inFeatures"/> to <paramref name="outFeatures"/>, registered under
    /// <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    protected FrozenLinear(string name, long inFeatures, long outFeatures) : base(name)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inFeatures);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outFeatures);
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
    }

    /// <summary>Width of the input (the weight's second axis).</summary>
    public long InFeatures { get; }

    /// <summary>Width of the output (the weight's first axis).</summary>
    public long OutFeatures { get; }

    /// <summary>The dtype of the activations this layer takes and returns (and of its bias).</summary>
    public abstract ScalarType ComputeDtype { get; }

    /// <summary>Where the weight is stored (and where the input must be).</summary>
    public abstract Device Device { get; }

    /// <summary>
    /// The weight as a new dense [out, in] tensor in <paramref name="dtype"/>, owned by the caller.
    /// For merging and reference checks; the forward pass of a quantised layer does not keep it.
    /// </summary>
    public abstract Tensor DequantizedWeight(ScalarType dtype);

    /// <summary>True if <see cref="OverwriteWeight"/> can store any dense weight exactly (the dense layers).</summary>
    public virtual bool SupportsMerge => false;

    /// <summary>Replaces the weight by <paramref name="weight"/> ([out, in]); merge and unmerge of LoRA use it.</summary>
    public virtual void OverwriteWeight(Tensor weight) => throw new NotSupportedException(MergeUnsupportedMessage);

    /// <summary>Why a LoRA adapter cannot be merged into this base, and what to do instead.</summary>
    public string MergeUnsupportedMessage =>
        $"a {GetType().Name} base cannot take a merged LoRA weight without re-quantising it (lossy); " +
        "load the base with --base-dtype fp32 or bf16 to merge an adapter";
}

/// <summary>Builds the frozen projections of a model (dense by default; the loader passes quantised ones).</summary>
public delegate FrozenLinear FrozenLinearFactory(long inFeatures, long outFeatures, bool hasBias, ScalarType dtype, Device? device);
