using System.IO.Compression;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Transfer;

/// <summary>
/// Turns one adapter tensor into the bytes that travel and back. The payload carries only the numbers: the receiver
/// knows the tensor's name and shape from the global adapter it sent out, and passes them to <see cref="Decode"/>.
/// </summary>
/// <remarks>
/// <para>Payload layouts (before the optional gzip, which wraps the whole payload):</para>
/// <list type="bullet">
/// <item>fp32: the float32 values in row-major order, little-endian; lossless, bit-exact.</item>
/// <item>bf16 / fp16: the 2-byte values, little-endian, cast by libtorch (round to nearest, ties to even: the same
/// bits as torch's <c>.to(torch.bfloat16)</c> / <c>.to(torch.float16)</c>).</item>
/// <item>int8: ⌈n / BlockSize⌉ float32 scales (each block's absmax), then n int8 codes round(x / absmax · 127) over the
/// flattened tensor, the last block short. This is <b>linear</b> absmax quantisation (code k stands for k·absmax/127),
/// not bitsandbytes' dynamic (non-linear) 8-bit map; the error is at most absmax/254 per element. A block that holds
/// NaN or ±Inf gets a non-finite scale and so decodes to non-finite values, which the server's validator rejects.</item>
/// </list>
/// <para>All bulk work is libtorch ops and span copies over native tensor memory: no per-element managed loops, since
/// adapters reach hundreds of MB.</para>
/// </remarks>
public static class TensorCodec
{
    private const float Int8Levels = 127f;

    /// <summary>Encodes a floating tensor (any float dtype, any shape, CPU) to a self-contained byte payload.</summary>
    /// <exception cref="ArgumentException">The tensor is not floating point, not on the CPU, or too large for one payload.</exception>
    public static byte[] Encode(Tensor tensor, TransferEncoding encoding)
    {
        ArgumentNullException.ThrowIfNull(encoding);
        var raw = encoding with { Gzip = false };
        var segments = EncodeSegments(tensor, raw);
        try
        {
            if (encoding.Gzip)
            {
                using var compressed = new MemoryStream();
                using (var gzip = new GZipStream(compressed, CompressionLevel.Fastest, leaveOpen: true))
                    foreach (var segment in segments) gzip.Write(segment.bytes);
                return compressed.ToArray();
            }
            var payload = GC.AllocateUninitializedArray<byte>((int)EncodedLength(encoding, tensor.numel()));
            int offset = 0;
            foreach (var segment in segments)
            {
                var bytes = segment.bytes;
                bytes.CopyTo(payload.AsSpan(offset));
                offset += bytes.Length;
            }
            return payload;
        }
        finally
        {
            foreach (var segment in segments) segment.Dispose();
        }
    }

    /// <summary>
    /// The uncompressed payload of <paramref name="tensor"/> as contiguous CPU tensors whose bytes, one after the other,
    /// are exactly what <see cref="Encode"/> returns without gzip: a sender can stream their memory as it is, without
    /// copying the payload into a managed array first. For fp32 of a contiguous fp32 tensor the one segment shares the
    /// tensor's memory.
    /// </summary>
    /// <remarks>The caller owns (and disposes) the segments; the segments of a shared-memory encoding stay valid only while
    /// <paramref name="tensor"/>'s memory is not changed.</remarks>
    /// <exception cref="ArgumentException">Gzip asked for, or the tensor is not floating point, not on the CPU, or too large
    /// for one payload.</exception>
    public static Tensor[] EncodeSegments(Tensor tensor, TransferEncoding encoding)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ArgumentNullException.ThrowIfNull(encoding);
        if (encoding.Gzip) throw new ArgumentException("gzip payloads are one compressed stream, not segments; use Encode", nameof(encoding));
        RequireLittleEndian();
        if (!tensor.is_floating_point())
            throw new ArgumentException($"only floating tensors travel as adapter weights; this one is {tensor.dtype}", nameof(tensor));
        if (tensor.device_type != DeviceType.CPU)
            throw new ArgumentException($"encode a CPU tensor; this one is on {tensor.device}", nameof(tensor));
        long count = tensor.numel();
        long rawLength = EncodedLength(encoding, count);
        if (rawLength > Array.MaxLength)
            throw new ArgumentException($"a {tensor.dtype} tensor of {count} elements encodes to {rawLength} bytes as {encoding}, " +
                $"more than one payload holds ({Array.MaxLength}); split it before sending", nameof(tensor));
        if (count == 0) return [];

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var source = tensor.detach();
        Tensor[] segments = encoding.Precision switch
        {
            TransferPrecision.Float32 => [source.to(ScalarType.Float32).contiguous()],
            TransferPrecision.BFloat16 => [source.to(ScalarType.BFloat16).contiguous()],
            TransferPrecision.Float16 => [source.to(ScalarType.Float16).contiguous()],
            TransferPrecision.Int8Blockwise => QuantizeInt8(source, encoding.BlockSize),
            _ => throw new ArgumentException($"unknown precision {encoding.Precision}", nameof(encoding)),
        };
        foreach (var segment in segments) segment.MoveToOuterDisposeScope();
        return segments;
    }

    /// <summary>Decodes to a float32 tensor of <paramref name="shape"/>; a payload of the wrong length/corrupt gzip → InvalidDataException naming what is wrong.</summary>
    /// <remarks>The caller owns the returned tensor. Gzip payloads are inflated only up to the length the shape needs, so a
    /// small hostile payload cannot expand beyond it; but the shape decides what is allocated, so with untrusted input
    /// compare it with the expected shape (the global adapter's) before decoding.</remarks>
    public static Tensor Decode(ReadOnlySpan<byte> payload, TransferEncoding encoding, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(encoding);
        RequireLittleEndian();
        long count = ElementCount(shape);
        long rawLength = EncodedLength(encoding, count);
        if (rawLength > Array.MaxLength)
            throw new InvalidDataException($"shape {FormatShape(shape)} as {encoding} needs {rawLength} bytes, more than one payload holds");
        if (encoding.Gzip)
        {
            var inflated = Gunzip(payload, (int)rawLength, encoding, shape);
            return DecodeRaw(inflated, encoding, shape, count);
        }
        if (payload.Length != rawLength)
            throw new InvalidDataException($"payload has {payload.Length} bytes, but {encoding} of shape {FormatShape(shape)} " +
                $"({count} elements) needs exactly {rawLength}; it is truncated, padded, or was encoded differently");
        return DecodeRaw(payload, encoding, shape, count);
    }

    /// <summary>The most bytes a gzip payload of <paramref name="rawLength"/> uncompressed bytes may announce: the fast
    /// deflate level grows incompressible fp32 by about 6 %, never by an eighth, plus room for gzip's framing. One bound
    /// for every receiver, so none buffers what another would refuse.</summary>
    public static long MaxGzipLength(long rawLength) => rawLength + rawLength / 8 + 4096;

    /// <summary>Bytes of a payload for <paramref name="elementCount"/> elements before gzip: what an uncompressed payload
    /// must measure exactly, and the bound a gzip payload inflates to.</summary>
    public static long EncodedLength(TransferEncoding encoding, long elementCount)
    {
        ArgumentNullException.ThrowIfNull(encoding);
        ArgumentOutOfRangeException.ThrowIfNegative(elementCount);
        if (encoding.BlockSize < 1)
            throw new ArgumentException($"int8 block size must be ≥ 1, got {encoding.BlockSize}", nameof(encoding));
        return encoding.Precision switch
        {
            TransferPrecision.Float32 => checked(elementCount * 4),
            TransferPrecision.BFloat16 or TransferPrecision.Float16 => checked(elementCount * 2),
            TransferPrecision.Int8Blockwise => checked(BlockCount(elementCount, encoding.BlockSize) * 4 + elementCount),
            _ => throw new ArgumentException($"unknown precision {encoding.Precision}", nameof(encoding)),
        };
    }

    /// <summary>[absmax per block (float32)], [codes (int8), n of them]; see the class remarks.</summary>
    /// <remarks>The full blocks and the short last block are handled as two grids rather than by padding the tail: a
    /// padded tail would cost a whole block of memory, which a hostile "int8:2147483647" header would make 8 GB.</remarks>
    private static Tensor[] QuantizeInt8(Tensor source, int blockSize)
    {
        var flat = source.to(ScalarType.Float32).reshape(-1); // (n,)
        var (full, tail) = SplitBlocks(flat, blockSize); // (full, B) and (1, n − full·B), either may be absent
        var parts = new[] { full, tail }.OfType<Tensor>().Select(QuantizeRows).ToList();
        return [.. parts.Select(p => p.Absmax), .. parts.Select(p => p.Codes)];
    }

    /// <summary>Each row is one block: its absmax and its codes round(x / absmax · 127).</summary>
    private static (Tensor Absmax, Tensor Codes) QuantizeRows(Tensor grid)
    {
        var absmax = grid.abs().amax([1]); // (blocks,)
        // An all-zero block would divide 0/0; its codes are 0 whatever the divisor, so divide by 1 there.
        // Every Scalar named: an implicit one can be finalised while libtorch reads it (Runtime.Scalars).
        using var zero = 0.ToScalar();
        using var levels = Int8Levels.ToScalar();
        using var lowest = (-Int8Levels).ToScalar();
        var divisor = where(absmax.eq(zero), ones_like(absmax), absmax).unsqueeze(1); // (blocks, 1)
        // round() is ties-to-even as torch.round; NaN (from a non-finite block) → 0 only to keep the int8 cast defined,
        // the block's non-finite scale already poisons its decoded values.
        var codes = (grid / divisor).mul(levels).round_().clamp_(lowest, levels).nan_to_num_(0).to(ScalarType.Int8); // (blocks, B)
        return (absmax.contiguous(), codes.contiguous());
    }

    /// <summary>(⌊n/B⌋, B) view of the full blocks and (1, n mod B) view of the rest; null where there is none.</summary>
    private static (Tensor? Full, Tensor? Tail) SplitBlocks(Tensor flat, int blockSize)
    {
        long count = flat.shape[0];
        long fullBlocks = count / blockSize, fullLength = fullBlocks * blockSize;
        var full = fullBlocks > 0 ? flat.narrow(0, 0, fullLength).view(fullBlocks, blockSize) : null;
        var tail = count > fullLength ? flat.narrow(0, fullLength, count - fullLength).view(1, -1) : null;
        return (full, tail);
    }

    private static Tensor DecodeRaw(ReadOnlySpan<byte> raw, TransferEncoding encoding, long[] shape, long count)
    {
        if (count == 0) return zeros(shape, ScalarType.Float32);
        using var scope = NewDisposeScope();
        Tensor result = encoding.Precision switch
        {
            TransferPrecision.Float32 => FromBytes(raw, shape, ScalarType.Float32),
            TransferPrecision.BFloat16 => FromBytes(raw, shape, ScalarType.BFloat16).to(ScalarType.Float32),
            TransferPrecision.Float16 => FromBytes(raw, shape, ScalarType.Float16).to(ScalarType.Float32),
            TransferPrecision.Int8Blockwise => DequantizeInt8(raw, encoding.BlockSize, shape, count),
            _ => throw new ArgumentException($"unknown precision {encoding.Precision}", nameof(encoding)),
        };
        return result.MoveToOuterDisposeScope();
    }

    private static Tensor DequantizeInt8(ReadOnlySpan<byte> raw, int blockSize, long[] shape, long count)
    {
        long blocks = BlockCount(count, blockSize);
        int scaleBytes = checked((int)(blocks * 4));
        return DequantizeInt8(FromBytes(raw[..scaleBytes], [blocks], ScalarType.Float32), FromBytes(raw[scaleBytes..], [count], ScalarType.Int8), blockSize, shape);
    }

    /// <summary>Float32 values of shape <paramref name="shape"/> from the int8 layout's two parts: (blocks,) float32 absmax
    /// scales and (n,) int8 codes. Call inside a dispose scope: the intermediates are not disposed here.</summary>
    internal static Tensor DequantizeInt8(Tensor absmax, Tensor int8Codes, int blockSize, long[] shape)
    {
        var steps = absmax / Int8Levels; // (blocks,): value of code 1
        var codes = int8Codes.to(ScalarType.Float32); // (n,)
        var (full, tail) = SplitBlocks(codes, blockSize);
        var parts = new List<Tensor>(2);
        if (full is not null) parts.Add((full * steps.narrow(0, 0, full.shape[0]).unsqueeze(1)).view(-1));
        if (tail is not null) parts.Add((tail * steps[-1]).view(-1));
        return (parts.Count == 1 ? parts[0] : cat(parts)).reshape(shape);
    }

    /// <summary>A new tensor holding a copy of <paramref name="bytes"/> (one memcpy into native memory).</summary>
    private static Tensor FromBytes(ReadOnlySpan<byte> bytes, long[] shape, ScalarType dtype)
    {
        var tensor = empty(shape, dtype);
        bytes.CopyTo(tensor.bytes);
        return tensor;
    }

    private static byte[] Gzip(ReadOnlySpan<byte> raw)
    {
        using var compressed = new MemoryStream();
        using (var gzip = new GZipStream(compressed, CompressionLevel.Fastest, leaveOpen: true)) gzip.Write(raw);
        return compressed.ToArray();
    }

    private static unsafe byte[] Gunzip(ReadOnlySpan<byte> payload, int expected, TransferEncoding encoding, long[] shape)
    {
        var inflated = GC.AllocateUninitializedArray<byte>(expected);
        int read;
        bool trailing;
        fixed (byte* start = payload)
        {
            using var source = new UnmanagedMemoryStream(start, payload.Length);
            using var gzip = new GZipStream(source, CompressionMode.Decompress);
            try
            {
                read = gzip.ReadAtLeast(inflated, expected, throwOnEndOfStream: false);
                // One byte more than the shape needs is enough to know the payload is wrong; never inflate the rest.
                trailing = read == expected && gzip.ReadByte() >= 0;
            }
            catch (InvalidDataException e)
            {
                throw new InvalidDataException($"gzip payload of {payload.Length} bytes ({encoding}, shape {FormatShape(shape)}) is corrupt: {e.Message}", e);
            }
        }
        if (read < expected)
            throw new InvalidDataException($"gzip payload ({encoding}, shape {FormatShape(shape)}) inflates to only {read} bytes, " +
                $"{expected} needed; it is truncated or was encoded differently");
        if (trailing)
            throw new InvalidDataException($"gzip payload ({encoding}, shape {FormatShape(shape)}) inflates to more than the {expected} bytes " +
                "the shape needs; it was encoded differently");
        return inflated;
    }

    internal static long ElementCount(long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        foreach (long size in shape)
        {
            if (size < 0) throw new ArgumentException($"shape {FormatShape(shape)} has a negative size", nameof(shape));
            count = checked(count * size);
        }
        return count;
    }

    internal static long BlockCount(long count, int blockSize) => (count + blockSize - 1) / blockSize;

    internal static string FormatShape(long[] shape) => "[" + string.Join(", ", shape) + "]";

    internal static void RequireLittleEndian()
    {
        // Payloads are little-endian by definition; a big-endian host would need byte swaps nobody has tested.
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("tensor payloads are little-endian; this host is big-endian");
    }
}
