using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Modeling;

/// <summary>
/// Rotary position embeddings in the Hugging Face convention: the head dimension is split into two halves that are
/// rotated together (rotate_half), not interleaved pairs as in Meta's original code. Frequencies are
/// 1 / theta^(2i/d), optionally rescaled (rope_scaling "linear" or "llama3"), computed in float32 as transformers does.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor inverseFrequencies; // (d/2) float32

    /// <summary>Computes the inverse frequencies of <paramref name="config"/> (with its RoPE scaling) on
    /// <paramref name="device"/>; the instance owns them.</summary>
    public RotaryEmbedding(LlamaConfig config, Device? device = null)
    {
        InverseFrequencies = inverseFrequencies = ComputeInverseFrequencies(config, device);
    }

    /// <summary>The (rescaled) inverse frequencies, (head_dim / 2) float32.</summary>
    public Tensor InverseFrequencies { get; }

    /// <summary>θ^(−2i/d) for i &lt; head_dim / 2, rescaled as <see cref="LlamaConfig.RopeScaling"/> says, in the same
    /// op order as transformers (so positions match bit for bit). The caller owns the result.</summary>
    public static Tensor ComputeInverseFrequencies(LlamaConfig config, Device? device = null)
    {
        using var scope = NewDisposeScope();
        int dim = config.HeadDim;
        // Same op order as transformers: arange(0, d, 2) as int64 -> float -> / d, then base ** that, then reciprocal.
        // Every Scalar named (Runtime.Scalars); each op is the one TorchSharp's operators made (1/x as reciprocal · 1).
        using var start = 0L.ToScalar();
        using var stop = ((long)dim).ToScalar();
        using var step = 2L.ToScalar();
        using var dimScalar = dim.ToScalar();
        using var one = 1.0f.ToScalar();
        var exponents = arange(start, stop, step, ScalarType.Int64, device).to(ScalarType.Float32).div(dimScalar);
        var inverse = pow(tensor((float)config.RopeTheta, ScalarType.Float32, device), exponents).reciprocal().mul(one);
        if (config.RopeScaling is { } scaling)
        {
            using var factor = scaling.Factor.ToScalar();
            inverse = scaling.Type switch
            {
                "linear" => inverse.div(factor),
                "llama3" => Llama3Scaling(inverse, scaling),
                _ => throw new ModelConfigException($"rope_scaling type '{scaling.Type}' is not supported"),
            };
        }
        return inverse.contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Llama 3.1's frequency-dependent rescaling: long wavelengths are divided by the factor, short ones kept,
    /// and the band in between interpolated smoothly (transformers' _compute_llama3_parameters).
    /// </summary>
    static Tensor Llama3Scaling(Tensor inverse, RopeScaling s)
    {
        double oldContext = s.OriginalMaxPositionEmbeddings;
        double lowFreqWavelength = oldContext / s.LowFreqFactor;
        double highFreqWavelength = oldContext / s.HighFreqFactor;
        // The ops TorchSharp's operators made, with every Scalar named (Runtime.Scalars): c / t is t.reciprocal() · c,
        // t − c is t + (−c) (the same IEEE result), 1 − t is −t + 1.
        using var twoPi = (2 * Math.PI).ToScalar();
        using var low = lowFreqWavelength.ToScalar();
        using var high = highFreqWavelength.ToScalar();
        using var factor = s.Factor.ToScalar();
        using var context = oldContext.ToScalar();
        using var negativeLowFactor = (-s.LowFreqFactor).ToScalar();
        using var band = (s.HighFreqFactor - s.LowFreqFactor).ToScalar();
        using var one = 1.ToScalar();
        var wavelength = inverse.reciprocal().mul(twoPi);
        var scaled = where(wavelength.gt(low), inverse.div(factor), inverse);
        var smooth = wavelength.reciprocal().mul(context).add(negativeLowFactor, Runtime.Scalars.One).div(band);
        var oneMinusSmooth = smooth.neg().add(one, Runtime.Scalars.One);
        var smoothed = (oneMinusSmooth * scaled).div(factor).add(smooth * scaled, Runtime.Scalars.One);
        var isMedium = wavelength.lt(high).logical_not() & wavelength.gt(low).logical_not();
        return where(isMedium, smoothed, scaled);
    }

    /// <summary>Cosine and signed sine tables for the given positions.</summary>
    /// <param name="positionIds">(B, T) int64 positions.</param>
    /// <returns>cos and the signed sin (−sin over the first half of the last axis, +sin over the second), each
    /// (B, 1, T, head_dim) in <paramref name="dtype"/>, ready to broadcast over heads and to pass to <see cref="Apply"/>.</returns>
    /// <param name="dtype">The dtype of the tables (the model's).</param>
    /// <remarks>The sign of rotate_half is folded into the table once per forward, so that <see cref="Apply"/> (called for
    /// q and k of every layer) needs one roll instead of two narrows, a negation and a concatenation; −(a·b) = (−a)·b
    /// exactly, so the result is bit for bit the same.</remarks>
    public (Tensor Cos, Tensor SignedSin) Tables(Tensor positionIds, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var positions = positionIds.to(ScalarType.Float32).unsqueeze(-1);           // (B, T, 1)
        var frequencies = positions * inverseFrequencies.to(positionIds.device);      // (B, T, d/2)
        var angles = cat(new[] { frequencies, frequencies }, -1).unsqueeze(1);        // (B, 1, T, d)
        var cos = angles.cos().to(dtype);
        var halfSin = frequencies.sin().to(dtype).unsqueeze(1);                       // (B, 1, T, d/2)
        var signedSin = cat(new[] { halfSin.neg(), halfSin }, -1);                    // (B, 1, T, d)
        return (cos.MoveToOuterDisposeScope(), signedSin.MoveToOuterDisposeScope());
    }

    /// <summary>x·cos + rotate_half(x)·sin, where rotate_half(x) = cat(−x₂, x₁) over the two halves of the last axis,
    /// computed as x·cos + roll(x, d/2)·signedSin with roll(x, d/2) = cat(x₂, x₁).</summary>
    /// <param name="x">(B, heads, T, d).</param>
    /// <param name="cos">(B, 1, T, d), from <see cref="Tables"/>.</param>
    /// <param name="signedSin">(B, 1, T, d), the signed sine from <see cref="Tables"/>.</param>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor signedSin)
    {
        long half = x.shape[^1] / 2;
        using var swapped = x.roll(half, -1);                                         // cat(x₂, x₁)
        using var a = x * cos;
        using var b = swapped * signedSin;
        return a.add(b, Runtime.Scalars.One);   // a named alpha, not TorchSharp's temporary (LlamaDecoderLayer.Forward)
    }

    /// <summary>Frees the inverse frequencies.</summary>
    public void Dispose() => inverseFrequencies.Dispose();
}
