using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>
/// A dense projection y = x Wᵀ + b with the weight layout of torch.nn.Linear ([out, in]).
/// Unlike TorchSharp's Linear it allocates uninitialised storage, so building a 7B model to load a checkpoint
/// into does not first spend minutes on a random initialisation that is overwritten at once.
/// </summary>
public sealed class DenseLinear : FrozenLinear
{
    // Field names are state-dict keys: "weight" and "bias" as in Hugging Face checkpoints.
    private readonly Parameter weight;
    private readonly Parameter? bias;

    /// <summary>An uninitialised (<paramref name="outFeatures"/>, <paramref name="inFeatures"/>) frozen weight in
    /// <paramref name="dtype"/>, and a zero bias when <paramref name="hasBias"/>; the loader fills them.</summary>
    public DenseLinear(long inFeatures, long outFeatures, bool hasBias, ScalarType dtype, Device? device = null)
        : base(nameof(DenseLinear), inFeatures, outFeatures)
    {
        weight = new Parameter(empty(new[] { outFeatures, inFeatures }, dtype, device), requires_grad: false);
        bias = hasBias ? new Parameter(zeros(new[] { outFeatures }, dtype, device), requires_grad: false) : null;
        RegisterComponents();
    }

    /// <summary>The default <see cref="FrozenLinearFactory"/>.</summary>
    public static FrozenLinear Create(long inFeatures, long outFeatures, bool hasBias, ScalarType dtype, Device? device) =>
        new DenseLinear(inFeatures, outFeatures, hasBias, dtype, device);

    /// <summary>The (out, in) weight, stored and multiplied in its own dtype; frozen.</summary>
    public Parameter Weight => weight;

    /// <summary>The (out) bias, or null.</summary>
    public Parameter? Bias => bias;

    /// <inheritdoc/>
    public override ScalarType ComputeDtype => weight.dtype;

    /// <inheritdoc/>
    public override Device Device => weight.device;

    /// <summary>x Wᵀ + b; the few rows of a decode step go through <see cref="DecodeLinear"/> so that the weight
    /// streams once, on every intra-op thread.</summary>
    public override Tensor forward(Tensor input) => DecodeLinear.Forward(input, weight, bias);

    /// <inheritdoc/>
    public override Tensor DequantizedWeight(ScalarType dtype) => weight.detach().to(dtype, copy: true);

    /// <inheritdoc/>
    public override bool SupportsMerge => true;

    /// <inheritdoc/>
    public override void OverwriteWeight(Tensor weight)
    {
        using var _ = no_grad();
        this.weight.copy_(weight);
    }
}
