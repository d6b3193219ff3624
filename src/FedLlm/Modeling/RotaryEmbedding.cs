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
        var exponents = arange(0, dim, 2, ScalarType.Int64, device).to(ScalarType.Float32) / dim;
        var inverse = 1.0f / pow(tensor((float)config.RopeTheta, ScalarType.Float32, device), exponents);
        if (config.RopeScaling is { } scaling)
        {
            inverse = scaling.Type switch
            {
                "linear" => inverse / scaling.Factor,
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
        var wavelength = 2 * Math.PI / inverse;
        var scaled = where(wavelength > lowFreqWavelength, inverse / s.Factor, inverse);
        var smooth = (oldContext / wavelength - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
        var smoothed = (1 - smooth) * scaled / s.Factor + smooth * scaled;
        var isMedium = (wavelength < highFreqWavelength).logical_not() & (wavelength > lowFreqWavelength).logical_not();
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
