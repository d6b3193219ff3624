using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>
/// A frozen projection whose weight is stored quantised and dequantised, layer by layer, inside each forward and each
/// backward call (see <see cref="FrozenLinearFunction"/>): the full-precision weight never outlives one call.
/// </summary>
/// <remarks>
/// Built empty by the loader (<see cref="BaseWeights.LayerFactory"/>) and filled once by <see cref="LoadWeight"/> while the
/// checkpoint streams past, so a full-precision copy of the model never exists. The bias (if any) stays dense, in
/// <see cref="ComputeDtype"/>, under its Hugging Face key "bias"; the quantised buffers use names no checkpoint has
/// (<c>weight_codes</c>, <c>weight_nf4</c>...), so they never collide with HF or PEFT keys.
/// </remarks>
public abstract class QuantizedLinear : FrozenLinear
{
    private readonly Parameter? bias;
    private readonly ScalarType computeDtype;
    private readonly Device device;

    /// <summary>A projection whose weight <see cref="LoadWeight"/> stores later, computing in
    /// <paramref name="computeDtype"/> on <paramref name="device"/> (null = the CPU), with a zero bias when
    /// <paramref name="hasBias"/>.</summary>
    protected QuantizedLinear(string name, long inFeatures, long outFeatures, bool hasBias, ScalarType computeDtype, Device? device)
        : base(name, inFeatures, outFeatures)
    {
        this.computeDtype = computeDtype;
        this.device = device ?? CPU;
        bias = hasBias ? new Parameter(zeros(new[] { outFeatures }, computeDtype, device), requires_grad: false) : null;
    }

    /// <inheritdoc/>
    public override ScalarType ComputeDtype => computeDtype;

    /// <inheritdoc/>
    public override Device Device => device;

    /// <summary>The (out) bias in the compute dtype, or null.</summary>
    public Parameter? Bias => bias;

    /// <summary>True once <see cref="LoadWeight"/> has stored the weight.</summary>
    public bool IsLoaded { get; private set; }

    /// <summary>Quantises <paramref name="weight"/> ([out, in], any float dtype) into this layer's buffers; once only.</summary>
    public void LoadWeight(Tensor weight)
    {
        if (IsLoaded) throw new InvalidOperationException($"{GetType().Name}: the weight is already loaded");
        if (weight.dim() != 2 || weight.shape[0] != OutFeatures || weight.shape[1] != InFeatures)
            throw new ArgumentException(
                $"{GetType().Name} [{OutFeatures}, {InFeatures}] cannot take a weight of shape [{string.Join(", ", weight.shape)}]", nameof(weight));
        using var _ = no_grad();
        // A new handle even when no copy is made; disposed at once, or it would keep the full-precision tensor alive until the GC runs.
        using var onDevice = weight.to(device);
        StoreQuantized(onDevice);
        IsLoaded = true;
    }

    /// <summary>Quantises and registers the buffers.</summary>
    protected abstract void StoreQuantized(Tensor weight);

    /// <summary>The dense weight rebuilt from the stored codes.</summary>
    protected abstract Tensor Dequantize(ScalarType dtype);

    /// <inheritdoc/>
    /// <exception cref="InvalidOperationException">No weight has been loaded yet.</exception>
    public sealed override Tensor DequantizedWeight(ScalarType dtype)
    {
        if (!IsLoaded) throw new InvalidOperationException($"{GetType().Name}: no weight loaded");
        return Dequantize(dtype);
    }

    /// <summary>Bytes of the quantised weight (codes and scales), for memory reports.</summary>
    public abstract long WeightBytes { get; }

    /// <summary>x Wᵀ + b with W dequantised for this call only; backward dequantises again, so no dense weight outlives
    /// the call.</summary>
    public override Tensor forward(Tensor input)
    {
        // Nothing to differentiate (inference, a frozen first layer's input): no custom node needed.
        if (!input.requires_grad || !is_grad_enabled()) return Project(input);
        // The scope disposes the extra handles the custom function creates; only the wrapped output leaves it.
        using var scope = NewDisposeScope();
        var output = FrozenLinearFunction.apply(input, this);
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>x Wᵀ + b with W dequantised for this call only.</summary>
    internal Tensor Project(Tensor input)
    {
        using var weight = DequantizedWeight(input.dtype);
        return nn.functional.linear(input, weight, bias);
    }

    /// <summary>∂L/∂x = g W (the base is frozen: no weight gradient), W dequantised for this call only.</summary>
    internal Tensor InputGradient(Tensor outputGradient)
    {
        using var weight = DequantizedWeight(outputGradient.dtype);
        return outputGradient.matmul(weight);
    }
}
