using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>
/// An NF4-quantised tensor: packed 4-bit level indices (two per byte) and the per-64 block absmax, either as float32
/// or double-quantised (<see cref="QuantizedScales"/>). See <see cref="Nf4Quantizer"/>.
/// </summary>
public sealed class Nf4Tensor : IDisposable
{
    Nf4Tensor(long[] shape, Tensor packed, Tensor? absmax, QuantizedScales? quantizedAbsmax)
    {
        Shape = shape;
        Packed = packed;
        Absmax = absmax;
        QuantizedAbsmax = quantizedAbsmax;
    }

    /// <summary>A tensor of <paramref name="shape"/> with float32 block scales; it takes ownership of
    /// <paramref name="packed"/> and <paramref name="absmax"/>.</summary>
    public static Nf4Tensor WithScales(long[] shape, Tensor packed, Tensor absmax) => new(shape, packed, absmax, null);

    /// <summary>A tensor of <paramref name="shape"/> with double-quantised block scales; it takes ownership of
    /// <paramref name="packed"/> and <paramref name="absmax"/>.</summary>
    public static Nf4Tensor WithQuantizedScales(long[] shape, Tensor packed, QuantizedScales absmax) => new(shape, packed, null, absmax);

    /// <summary>The original tensor's shape.</summary>
    public long[] Shape { get; }

    /// <summary>Elements of the original tensor.</summary>
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>uint8 (blocks·32): index 2k in the high nibble, 2k+1 in the low one.</summary>
    public Tensor Packed { get; }

    /// <summary>float32 absmax per block, or null when double-quantised.</summary>
    public Tensor? Absmax { get; }

    /// <summary>The double-quantised absmax, or null.</summary>
    public QuantizedScales? QuantizedAbsmax { get; }

    /// <summary>The level indices (blocks, 64), int64.</summary>
    public Tensor Indices()
    {
        using var scope = NewDisposeScope();
        var bytes = Packed.to(ScalarType.Int64);
        var high = bytes.bitwise_right_shift(4);
        var low = bytes.bitwise_and(15);
        return stack(new[] { high, low }, 1).view(-1, Nf4Quantizer.BlockSize).MoveToOuterDisposeScope();
    }

    /// <summary>The block absmax as float32 (dequantised first if double-quantised).</summary>
    public Tensor BlockAbsmax() => QuantizedAbsmax?.Dequantize() ?? Absmax!.alias();

    /// <summary>The dense tensor in <paramref name="dtype"/>: levels[index] · absmax, computed in float32.</summary>
    /// <remarks>
    /// Looks each byte up in a 256 × 2 table of level pairs rather than unpacking nibbles into an int64 index per value:
    /// the transient memory is a third, and this runs in every forward and backward of every layer.
    /// </remarks>
    public Tensor Dequantize(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var table = PairTable.to(Packed.device);
        var values = table.index_select(0, Packed.to(ScalarType.Int32));                 // (nb*32, 2)
        var absmax = BlockAbsmax();
        values = values.view(absmax.shape[0], -1).mul_(absmax.unsqueeze(1));             // (nb, 64)
        var dense = values.view(-1).narrow(0, 0, Count).view(Shape);
        return (dtype == ScalarType.Float32 ? dense.contiguous() : dense.to(dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>Row b holds (levels[b >> 4], levels[b &amp; 15]): the two values byte b encodes.</summary>
    static readonly Tensor PairTable = BuildPairTable();

    static Tensor BuildPairTable()
    {
        var pairs = new float[512];
        for (int b = 0; b < 256; b++)
        {
            pairs[2 * b] = Nf4Quantizer.Levels[b >> 4];
            pairs[2 * b + 1] = Nf4Quantizer.Levels[b & 15];
        }
        return tensor(pairs, new long[] { 256, 2 }).DetachFromDisposeScope();
    }

    /// <summary>Bytes held: packed indices plus scales.</summary>
    public long Bytes => Packed.NumberOfElements + (Absmax?.NumberOfElements * 4 ?? 0)
        + (QuantizedAbsmax is { } q ? q.Codes.NumberOfElements + q.Absmax.NumberOfElements * 4 + 4 : 0);

    internal void MoveToOuterDisposeScope()
    {
        Packed.MoveToOuterDisposeScope();
        Absmax?.MoveToOuterDisposeScope();
        QuantizedAbsmax?.MoveToOuterDisposeScope();
    }

    /// <summary>Frees the packed codes and the scales.</summary>
    public void Dispose()
    {
        Packed.Dispose();
        Absmax?.Dispose();
        QuantizedAbsmax?.Dispose();
    }
}
