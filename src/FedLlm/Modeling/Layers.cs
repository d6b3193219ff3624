using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FedLlm.Modeling;

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

/// <summary>Token embedding table ([vocab, hidden]); allocated uninitialised for the same reason as <see cref="DenseLinear"/>.</summary>
public sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    public TokenEmbedding(long vocabSize, long hiddenSize, ScalarType dtype, Device? device = null) : base(nameof(TokenEmbedding))
    {
        weight = new Parameter(empty(new[] { vocabSize, hiddenSize }, dtype, device), requires_grad: false);
        RegisterComponents();
    }

    public Parameter Weight => weight;

    /// <param name="inputIds">(B, T) int64 token ids.</param>
    /// <returns>(B, T, H).</returns>
    public override Tensor forward(Tensor inputIds)
    {
        using var flat = inputIds.reshape(-1);
        using var rows = weight.index_select(0, flat);            // (B*T, H)
        return rows.view(inputIds.shape[0], inputIds.shape[1], -1); // (B, T, H)
    }
}

/// <summary>
/// Root-mean-square layer norm as Hugging Face computes it: statistics in float32, the weight applied after
/// casting back to the input dtype (LlamaRMSNorm).
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double eps;

    public RmsNorm(long hiddenSize, double eps, ScalarType dtype, Device? device = null) : base(nameof(RmsNorm))
    {
        weight = new Parameter(ones(new[] { hiddenSize }, dtype, device), requires_grad: false);
        this.eps = eps;
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public override Tensor forward(Tensor input)
    {
        var inputDtype = input.dtype;
        // float64 stays float64 (gradient checks); every lower precision is lifted to float32.
        using var x = input.to(inputDtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32);
        // The square is disposed at once: left to the step's dispose scope it would outlive its use (0.3 GB per step).
        using var squared = x.square();
        using var meanSquare = squared.mean(new long[] { -1 }, keepdim: true);  // (B, T, 1)
        using var inverse = (meanSquare + eps).rsqrt_();
        using var normed = x * inverse;
        using var cast = normed.to(inputDtype);
        return weight * cast;
    }
}
