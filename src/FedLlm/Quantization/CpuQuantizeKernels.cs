using System.Runtime.Intrinsics;
using FedLlm.Runtime;
using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>
/// The NF4 and int8 quantisers as single passes over a CPU tensor's memory, in parallel over blocks (NF4) or rows
/// (int8): each value is read once as float32 and written once as its code, with no float32 copy, int64 index tensor
/// or intermediate the libtorch formulation allocates per step. Same float32 arithmetic in the same order (absmax,
/// value / scale with IEEE division, the same midpoints and tie rule; round half to even), so the codes and scales are
/// bitwise those of <see cref="Nf4Quantizer"/>'s and <see cref="Int8RowwiseQuantizer"/>'s tensor code, which stays the
/// reference and the path for other devices and dtypes.
/// </summary>
internal static class CpuQuantizeKernels
{
    /// <summary>Whether the kernels can read <paramref name="weight"/> directly: a contiguous CPU float32 or bfloat16 tensor
    /// under 2 GiB.</summary>
    public static bool Supports(Tensor weight) =>
        weight.device.type == TorchSharp.DeviceType.CPU && weight.is_contiguous()
        && weight.dtype is ScalarType.Float32 or ScalarType.BFloat16
        && weight.numel() * weight.element_size() <= int.MaxValue; // read through one int-indexed span

    /// <summary>NF4 of <paramref name="weight"/> flattened: packed indices (blocks · 32, uint8) and float32 absmax per block.</summary>
    public static unsafe (Tensor Packed, Tensor Absmax) Nf4(Tensor weight)
    {
        const int block = Nf4Quantizer.BlockSize;
        long n = weight.numel();
        long blocks = (n + block - 1) / block;
        var packed = empty([blocks * block / 2], ScalarType.Byte);
        var absmax = empty([blocks], ScalarType.Float32);
        if (n == 0) return (packed, absmax);
        var midpoints = Midpoints(Nf4Quantizer.Levels);
        bool bf16 = weight.dtype == ScalarType.BFloat16;
        fixed (byte* source = weight.bytes)
        fixed (byte* codes = packed.bytes)
        fixed (byte* scales = absmax.bytes)
        {
            byte* src = source, dst = codes;
            float* amax = (float*)scales;
            const long blocksPerTask = 2048;
            Parallel.For(0L, (blocks + blocksPerTask - 1) / blocksPerTask, Options, task =>
            {
                Span<float> values = stackalloc float[block];
                Span<int> indices = stackalloc int[block];
                long end = Math.Min(blocks, (task + 1) * blocksPerTask);
                for (long b = task * blocksPerTask; b < end; b++)
                {
                    long first = b * block;
                    int count = (int)Math.Min(block, n - first);
                    Read(src, bf16, first, count, values);
                    values[count..].Clear(); // the last block is zero-padded
                    float max = AbsMax(values);
                    amax[b] = max;
                    float safe = max == 0 ? 1f : max;
                    Bucketize(values, safe, midpoints, indices);
                    byte* output = dst + b * (block / 2);
                    for (int j = 0; j < block / 2; j++) output[j] = (byte)((indices[2 * j] << 4) | indices[2 * j + 1]);
                }
            });
        }
        return (packed, absmax);
    }

    /// <summary>Row-wise int8 of a [out, in] weight: int8 codes (out, in) and float32 scales (out, 1).</summary>
    public static unsafe (Tensor Codes, Tensor Scales) Int8(Tensor weight)
    {
        long rows = weight.shape[0], columns = weight.shape[1];
        var codes = empty([rows, columns], ScalarType.Int8);
        var scales = empty([rows, 1], ScalarType.Float32);
        if (rows == 0 || columns == 0)
        {
            scales.fill_(1);
            return (codes, scales);
        }
        bool bf16 = weight.dtype == ScalarType.BFloat16;
        fixed (byte* source = weight.bytes)
        fixed (byte* output = codes.bytes)
        fixed (byte* scaleBytes = scales.bytes)
        {
            byte* src = source;
            sbyte* dst = (sbyte*)output;
            float* scale = (float*)scaleBytes;
            Parallel.For(0L, rows, Options, row =>
            {
                const int piece = 1024;
                Span<float> values = stackalloc float[piece];
                Span<int> rounded = stackalloc int[piece];
                float max = 0;
                for (long start = 0; start < columns; start += piece)
                {
                    int count = (int)Math.Min(piece, columns - start);
                    Read(src, bf16, row * columns + start, count, values);
                    max = Math.Max(max, AbsMax(values[..count]));
                }
                float s = max == 0 ? 1f : max / 127f;
                scale[row] = s;
                for (long start = 0; start < columns; start += piece)
                {
                    int count = (int)Math.Min(piece, columns - start);
                    Read(src, bf16, row * columns + start, count, values);
                    RoundClamped(values[..count], s, rounded);
                    sbyte* o = dst + row * columns + start;
                    for (int j = 0; j < count; j++) o[j] = (sbyte)rounded[j];
                }
            });
        }
        return (codes, scales);
    }

    static ParallelOptions Options => new() { MaxDegreeOfParallelism = Math.Max(1, TorchSharp.torch.get_num_threads()) };

    /// <summary>(levels[k] + levels[k+1]) / 2 in float32, as <see cref="Nf4Quantizer.NearestLevel"/> computes them.</summary>
    static float[] Midpoints(float[] levels)
    {
        var midpoints = new float[levels.Length - 1];
        for (int k = 0; k < midpoints.Length; k++) midpoints[k] = (levels[k] + levels[k + 1]) / 2f;
        return midpoints;
    }

    /// <summary>Values [first, first + count) as float32 (bfloat16 widened exactly: its bits are a float32's upper half).</summary>
    static unsafe void Read(byte* source, bool bf16, long first, int count, Span<float> values)
    {
        if (bf16) BFloat16Bits.Widen(new ReadOnlySpan<ushort>((ushort*)source + first, count), values);
        else new ReadOnlySpan<float>((float*)source + first, count).CopyTo(values);
    }

    /// <summary>max |v| over finite values (0 for none): the same number as Math.Max over Math.Abs in any order, since
    /// max over non-negative non-NaN floats is associative and commutative.</summary>
    static float AbsMax(ReadOnlySpan<float> values)
    {
        int j = 0;
        float max = 0;
        if (Vector256.IsHardwareAccelerated && values.Length >= Vector256<float>.Count)
        {
            var vectorMax = Vector256<float>.Zero;
            for (; j + Vector256<float>.Count <= values.Length; j += Vector256<float>.Count)
                vectorMax = Vector256.Max(vectorMax, Vector256.Abs(Vector256.Create(values.Slice(j, Vector256<float>.Count))));
            for (int k = 0; k < Vector256<float>.Count; k++) max = Math.Max(max, vectorMax[k]);
        }
        for (; j < values.Length; j++) max = Math.Max(max, Math.Abs(values[j]));
        return max;
    }

    /// <summary>clamp(round_half_even(v / scale), −127, 127) for each value, as integers: IEEE division and rounding, so
    /// the same numbers as the scalar formula element by element.</summary>
    static void RoundClamped(ReadOnlySpan<float> values, float scale, Span<int> rounded)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var divisor = Vector256.Create(scale);
            var low = Vector256.Create(-127f);
            var high = Vector256.Create(127f);
            for (; j + Vector256<float>.Count <= values.Length; j += Vector256<float>.Count)
            {
                var quotient = Vector256.Create(values.Slice(j, Vector256<float>.Count)) / divisor;
                var clamped = Vector256.Min(Vector256.Max(Vector256.Round(quotient), low), high);
                Vector256.ConvertToInt32(clamped).CopyTo(rounded[j..]);
            }
        }
        for (; j < values.Length; j++) rounded[j] = (int)Math.Clamp(MathF.Round(values[j] / scale), -127f, 127f);
    }

    /// <summary>torch.bucketize(value / scale, midpoints, right: false) for each value: the number of midpoints
    /// strictly below it.</summary>
    static void Bucketize(ReadOnlySpan<float> values, float scale, float[] midpoints, Span<int> indices)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var divisor = Vector256.Create(scale);
            for (; j + Vector256<float>.Count <= values.Length; j += Vector256<float>.Count)
            {
                var normalized = Vector256.Create(values.Slice(j, Vector256<float>.Count)) / divisor;
                var count = Vector256<int>.Zero;
                foreach (float m in midpoints) count -= Vector256.GreaterThan(normalized, Vector256.Create(m)).AsInt32(); // true = −1
                count.CopyTo(indices.Slice(j, Vector256<int>.Count));
            }
        }
        for (; j < values.Length; j++)
        {
            float normalized = values[j] / scale;
            int count = 0;
            foreach (float m in midpoints) if (normalized > m) count++;
            indices[j] = count;
        }
    }
}
