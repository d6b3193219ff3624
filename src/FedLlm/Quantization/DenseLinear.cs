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

    public Parameter Weight => weight;
    public Parameter? Bias => bias;
    public override ScalarType ComputeDtype => weight.dtype;
    public override Device Device => weight.device;

    public override Tensor forward(Tensor input) => nn.functional.linear(input, weight, bias);

    public override Tensor DequantizedWeight(ScalarType dtype) => weight.detach().to(dtype, copy: true);

    public override bool SupportsMerge => true;

    public override void OverwriteWeight(Tensor weight)
    {
        using var _ = no_grad();
        this.weight.copy_(weight);
    }
}
