using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

using FedLlm.Quantization;

namespace FedLlm.Modeling;

/// <summary>Token embedding table ([vocab, hidden]); allocated uninitialised for the same reason as <see cref="DenseLinear"/>.</summary>
public sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    /// <summary>A (vocab, hidden) embedding matrix, uninitialised until weights are loaded; frozen (no
    /// gradient).</summary>
    public TokenEmbedding(long vocabSize, long hiddenSize, ScalarType dtype, Device? device = null) : base(nameof(TokenEmbedding))
    {
        weight = new Parameter(empty(new[] { vocabSize, hiddenSize }, dtype, device), requires_grad: false);
        RegisterComponents();
    }

    /// <summary>The (vocab, hidden) embedding matrix, embed_tokens.weight in the checkpoint (also the head when
    /// embeddings are tied).</summary>
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

    /// <summary>RMSNorm over the last axis of width <paramref name="hiddenSize"/>, its scale initialised to 1 and
    /// frozen; <paramref name="eps"/> is added to the mean square.</summary>
    public RmsNorm(long hiddenSize, double eps, ScalarType dtype, Device? device = null) : base(nameof(RmsNorm))
    {
        weight = new Parameter(ones(new[] { hiddenSize }, dtype, device), requires_grad: false);
        this.eps = eps;
        RegisterComponents();
    }

    /// <summary>The (hidden) scale γ.</summary>
    public Parameter Weight => weight;

    /// <summary>x / √(mean(x²) + eps) · γ over the last axis, computed in float32 (float64 stays float64) and returned
    /// in the input's dtype.</summary>
    public override Tensor forward(Tensor input)
    {
        var inputDtype = input.dtype;
        // float64 stays float64 (gradient checks); every lower precision is lifted to float32. In float32 and float64
        // the casts would be no-ops, skipped: a decode step runs this 61 times and every op costs a native call.
        bool lifted = inputDtype is not (ScalarType.Float32 or ScalarType.Float64);
        using var liftedInput = lifted ? input.to(ScalarType.Float32) : null;
        var x = liftedInput ?? input;
        // The square is disposed at once: left to the step's dispose scope it would outlive its use (0.3 GB per step).
        using var squared = x.square();
        using var meanSquare = squared.mean(new long[] { -1 }, keepdim: true);  // (B, T, 1)
        // Both scalars named: `meanSquare + eps` makes a temporary Scalar and add(Scalar) an implicit alpha of its own,
        // either of which a finalizer can free while libtorch reads it (see AdamW.Step).
        using var epsilon = eps.ToScalar();
        using var inverse = meanSquare.add(epsilon, Runtime.Scalars.One).rsqrt_();
        using var normed = x * inverse;
        if (!lifted) return weight * normed;
        using var cast = normed.to(inputDtype);
        return weight * cast;
    }
}
