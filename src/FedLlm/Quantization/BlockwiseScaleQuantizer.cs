using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>
/// QLoRA's double quantisation of NF4 block scales: subtract the mean, then 8-bit <see cref="DynamicMap8"/> codes in
/// blocks of 256, each with its own float32 absmax.
/// </summary>
public static class BlockwiseScaleQuantizer
{
    /// <summary>Quantises float32 scales (n); the result owns its tensors.</summary>
    public static QuantizedScales Quantize(Tensor scales)
    {
        using var scope = NewDisposeScope();
        long count = scales.shape[0];
        // The mean in float64 so that summation order (libtorch version, thread count) cannot change its float32 value.
        var offset = scales.to(ScalarType.Float64).mean().to(ScalarType.Float32);       // ()
        var centered = scales - offset;                                                   // (n)
        var (blocks, _) = Nf4Quantizer.Blocked(centered, Nf4Quantizer.ScaleBlockSize);    // (nb2, 256)
        var absmax = blocks.abs().amax(new long[] { 1 });                                 // (nb2)
        var codes = Nf4Quantizer.NearestLevel(blocks, absmax, DynamicMap8.Levels).to(ScalarType.Byte).reshape(-1);
        var result = new QuantizedScales(codes.narrow(0, 0, count).clone(), absmax, offset);
        result.MoveToOuterDisposeScope();
        return result;
    }
}

/// <summary>Double-quantised NF4 block scales: 8-bit codes (n), float32 absmax per 256 codes, float32 mean.</summary>
public sealed class QuantizedScales : IDisposable
{
    /// <summary>Takes ownership of the three tensors.</summary>
    public QuantizedScales(Tensor codes, Tensor absmax, Tensor offset)
    {
        Codes = codes;
        Absmax = absmax;
        Offset = offset;
    }

    /// <summary>uint8 (n): each scale's index into <see cref="DynamicMap8.Levels"/>, after subtracting the mean and
    /// dividing by its block's absmax.</summary>
    public Tensor Codes { get; }

    /// <summary>float32 (⌈n / 256⌉): the absmax of each block of 256 centred scales.</summary>
    public Tensor Absmax { get; }

    /// <summary>float32 scalar: the mean subtracted from every scale before quantisation.</summary>
    public Tensor Offset { get; }

    /// <summary>levels[code] · absmax + mean, float32 (n).</summary>
    public Tensor Dequantize()
    {
        using var scope = NewDisposeScope();
        long count = Codes.shape[0];
        var (blocks, _) = Nf4Quantizer.Blocked(Codes.to(ScalarType.Int64), Nf4Quantizer.ScaleBlockSize); // padded with code 0, cut below
        var values = Nf4Quantizer.LookUp(blocks, Absmax, DynamicMap8.Levels, count);
        return values.add_(Offset).MoveToOuterDisposeScope();
    }

    internal void MoveToOuterDisposeScope()
    {
        Codes.MoveToOuterDisposeScope();
        Absmax.MoveToOuterDisposeScope();
        Offset.MoveToOuterDisposeScope();
    }

    /// <summary>Frees the three tensors.</summary>
    public void Dispose()
    {
        Codes.Dispose();
        Absmax.Dispose();
        Offset.Dispose();
    }
}
