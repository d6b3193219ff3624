using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using FedLlm.Runtime;

namespace FedLlm.Quantization;

/// <summary>
/// y = x Wᵀ for the one to <see cref="MaxRows"/> rows of a decode step, over fp32 or bf16 weights in place: each
/// thread streams its own share of W's rows once and takes the dot products of every input row with them, summing in
/// fp32 (bf16 weights and inputs are widened exactly; a bf16 output is rounded once, to nearest even, as libtorch
/// rounds its fp32 accumulator).
/// </summary>
/// <remarks>
/// A decode step is a few hundred such products per token, each too small to hide the cost of waking libtorch's
/// sleeping OpenMP threads, and libtorch's bf16 products of few rows stream far below the memory's speed (`FedLlm.Bench
/// gemv --precision bf16`). The threads here are <see cref="SpinningWorkers"/>, which stay awake between the
/// products of one step. Weight rows are taken four at a time and input rows two at a time, so each load of a weight
/// vector feeds up to two fused multiply-adds and each input vector four.
/// </remarks>
internal static unsafe class DecodeGemv
{
    /// <summary>The most input rows taken, a batched decode step's; larger batches go to MKL's blocked kernels, which
    /// reuse each loaded weight vector across more rows than these kernels do.</summary>
    public const int MaxRows = 8;

    /// <summary>Below this many weight elements one thread does the whole product: handing half of it to another
    /// thread costs more than it saves.</summary>
    const long MinParallelWeightElements = 1 << 16;

    const int WeightRowsPerBlock = 4;

    /// <summary>The most blocks a thread takes at a time: 64 rows, 147 KB of an fp32 weight with 576 columns.</summary>
    const int MaxChunkBlocks = 16;

    /// <summary>How far ahead the kernels prefetch W, in rows (`FedLlm.Bench gemv` showed no clear best between 4 and 16).</summary>
    const int PrefetchRowsAhead = 8;

    /// <summary>One prefetch per this many elements: a 64-byte line of fp32, half a line of bf16 (one per line of
    /// bf16 measured no better).</summary>
    const int PrefetchEveryElements = 16;

    /// <summary>Whether this CPU has the 256-bit vectors and fused multiply-add the kernels are written for.</summary>
    public static bool Supported => Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Whether <paramref name="rows"/> rows over a <paramref name="dtype"/> weight are taken here: 1 to
    /// <see cref="MaxRows"/> over fp32, one over bf16. With more than one bf16 row every weight vector is widened once
    /// per pair of input rows, and oneDNN's bf16 product was as fast with less CPU (`FedLlm.Bench decode`, batch 8).</summary>
    public static bool Takes(long rows, TorchSharp.torch.ScalarType dtype) =>
        Supported && rows >= 1 && (dtype == TorchSharp.torch.ScalarType.Float32 ? rows <= MaxRows : dtype == TorchSharp.torch.ScalarType.BFloat16 && rows == 1);

    /// <summary>y (rows, out) = x (rows, in) · W (out, in)ᵀ. All three are contiguous and alive for the call.</summary>
    /// <param name="x">rows × in values.</param>
    /// <param name="rows">1 to <see cref="MaxRows"/>.</param>
    /// <param name="weight">out × in values.</param>
    /// <param name="bf16">x, W and y hold bf16 values (else fp32).</param>
    /// <param name="inFeatures">W's columns.</param>
    /// <param name="y">rows × out values, written.</param>
    /// <param name="outFeatures">W's rows.</param>
    /// <param name="threads">Threads to share the work among, the caller's included.</param>
    public static void Multiply(void* x, int rows, void* weight, bool bf16, int inFeatures, void* y, int outFeatures, int threads)
    {
        if ((uint)rows - 1 >= MaxRows) throw new ArgumentOutOfRangeException(nameof(rows), rows, $"1 to {MaxRows} rows");
        float[]? widened = bf16 ? System.Buffers.ArrayPool<float>.Shared.Rent(rows * inFeatures) : null;
        try
        {
            fixed (float* widenedX = widened)
            {
                if (bf16) BFloat16Bits.Widen(new ReadOnlySpan<ushort>(x, rows * inFeatures), new Span<float>(widenedX, rows * inFeatures));
                long work = (long)outFeatures * inFeatures;
                int parts = work < MinParallelWeightElements ? 1 : Math.Clamp(threads, 1, Math.Max(1, outFeatures / WeightRowsPerBlock));
                var job = reusableJob ??= new Job();
                job.Set(bf16 ? widenedX : (float*)x, rows, weight, bf16, inFeatures, y, outFeatures, parts);
                SpinningWorkers.Run(job, parts);
            }
        }
        finally
        {
            if (widened is not null) System.Buffers.ArrayPool<float>.Shared.Return(widened);
        }
    }

    /// <summary>This thread's job, set afresh for each product: the products of a decode step make no garbage.</summary>
    [ThreadStatic] static Job? reusableJob;

    sealed class Job : SpinningWorkers.IJob
    {
        float* x;
        int rows;
        void* weight;
        bool bf16;
        int inFeatures;
        void* y;
        int outFeatures;

        // One contiguous run of W per thread, its end taken over by whichever thread finishes first (StealingRanges).
        readonly StealingRanges blocks = new(0, 1, 1);

        /// <summary>The product to compute next; the previous one has returned from <see cref="SpinningWorkers.Run"/>.</summary>
        public void Set(float* x, int rows, void* weight, bool bf16, int inFeatures, void* y, int outFeatures, int parts)
        {
            this.x = x;
            this.rows = rows;
            this.weight = weight;
            this.bf16 = bf16;
            this.inFeatures = inFeatures;
            this.y = y;
            this.outFeatures = outFeatures;
            int blockCount = (outFeatures + WeightRowsPerBlock - 1) / WeightRowsPerBlock;
            blocks.Reset(blockCount, parts, ChunkBlocks(blockCount, parts));
        }

        public void Run(int part, int parts)
        {
            while (blocks.TryTake(part, out int first, out int end))
            {
                int firstRow = first * WeightRowsPerBlock, endRow = Math.Min(outFeatures, end * WeightRowsPerBlock);
                if (bf16) Rows<BFloat16Weight>(firstRow, endRow);
                else Rows<Float32Weight>(firstRow, endRow);
            }
        }

        /// <summary>Blocks taken at a time: an eighth of a thread's share, at most <see cref="MaxChunkBlocks"/>, so a
        /// thread that finishes first finds several chunks left to take over.</summary>
        static int ChunkBlocks(int blockCount, int parts) => Math.Clamp(blockCount / parts / 8, 1, MaxChunkBlocks);

        void Rows<TWeight>(int first, int end) where TWeight : struct, IWeightRow
        {
            long rowBytes = (long)inFeatures * TWeight.ElementBytes;
            for (int o = first; o < end; o += WeightRowsPerBlock)
            {
                int block = Math.Min(WeightRowsPerBlock, end - o);
                // A block past W's last row repeats its first row, so the kernel always reads four valid rows.
                byte* w0 = (byte*)weight + o * rowBytes;
                byte* w1 = block > 1 ? w0 + rowBytes : w0;
                byte* w2 = block > 2 ? w0 + 2 * rowBytes : w0;
                byte* w3 = block > 3 ? w0 + 3 * rowBytes : w0;
                if (rows == 1)
                {
                    var sums = DotOne<TWeight>(w0, w1, w2, w3, x, inFeatures);
                    for (int j = 0; j < block; j++) Store(o + j, sums[j]);
                    continue;
                }
                for (int r = 0; r < rows; r += 2)
                {
                    float* xa = x + (long)r * inFeatures;
                    float* xb = r + 1 < rows ? xa + inFeatures : xa;
                    // The first pair of input rows brings the block into the cache; later pairs find it there.
                    var sums = DotTwo<TWeight>(w0, w1, w2, w3, xa, xb, inFeatures, prefetch: r == 0);
                    for (int j = 0; j < block; j++)
                    {
                        Store((long)r * outFeatures + o + j, sums[j]);
                        if (r + 1 < rows) Store((long)(r + 1) * outFeatures + o + j, sums[WeightRowsPerBlock + j]);
                    }
                }
            }
        }

        void Store(long index, float value)
        {
            if (bf16) ((ushort*)y)[index] = BFloat16Bits.Round(value);
            else ((float*)y)[index] = value;
        }
    }

    /// <summary>The dot products of weight rows w0…w3 with the input row x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static Sums DotOne<TWeight>(byte* w0, byte* w1, byte* w2, byte* w3, float* x, int length) where TWeight : struct, IWeightRow
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        long ahead = (long)PrefetchRowsAhead * length * TWeight.ElementBytes;
        int k = 0;
        for (; k <= length - 8; k += 8)
        {
            if ((k & (PrefetchEveryElements - 1)) == 0) Prefetch<TWeight>(w0, w1, w2, w3, k, ahead);
            var v = Vector256.Load(x + k);
            a0 = Vector256.FusedMultiplyAdd(TWeight.Load(w0, k), v, a0);
            a1 = Vector256.FusedMultiplyAdd(TWeight.Load(w1, k), v, a1);
            a2 = Vector256.FusedMultiplyAdd(TWeight.Load(w2, k), v, a2);
            a3 = Vector256.FusedMultiplyAdd(TWeight.Load(w3, k), v, a3);
        }
        Sums sums = default;
        sums[0] = Vector256.Sum(a0); sums[1] = Vector256.Sum(a1); sums[2] = Vector256.Sum(a2); sums[3] = Vector256.Sum(a3);
        for (; k < length; k++)
        {
            sums[0] += TWeight.At(w0, k) * x[k]; sums[1] += TWeight.At(w1, k) * x[k];
            sums[2] += TWeight.At(w2, k) * x[k]; sums[3] += TWeight.At(w3, k) * x[k];
        }
        return sums;
    }

    /// <summary>The eight dot products of weight rows w0…w3 with input rows xa and xb: [w·xa for w0…w3, w·xb for
    /// w0…w3].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static Sums DotTwo<TWeight>(byte* w0, byte* w1, byte* w2, byte* w3, float* xa, float* xb, int length, bool prefetch)
        where TWeight : struct, IWeightRow
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        long ahead = (long)PrefetchRowsAhead * length * TWeight.ElementBytes;
        int k = 0;
        for (; k <= length - 8; k += 8)
        {
            if (prefetch && (k & (PrefetchEveryElements - 1)) == 0) Prefetch<TWeight>(w0, w1, w2, w3, k, ahead);
            var va = Vector256.Load(xa + k);
            var vb = Vector256.Load(xb + k);
            var v0 = TWeight.Load(w0, k);
            var v1 = TWeight.Load(w1, k);
            var v2 = TWeight.Load(w2, k);
            var v3 = TWeight.Load(w3, k);
            a0 = Vector256.FusedMultiplyAdd(v0, va, a0);
            a1 = Vector256.FusedMultiplyAdd(v1, va, a1);
            a2 = Vector256.FusedMultiplyAdd(v2, va, a2);
            a3 = Vector256.FusedMultiplyAdd(v3, va, a3);
            b0 = Vector256.FusedMultiplyAdd(v0, vb, b0);
            b1 = Vector256.FusedMultiplyAdd(v1, vb, b1);
            b2 = Vector256.FusedMultiplyAdd(v2, vb, b2);
            b3 = Vector256.FusedMultiplyAdd(v3, vb, b3);
        }
        Sums sums = default;
        sums[0] = Vector256.Sum(a0); sums[1] = Vector256.Sum(a1); sums[2] = Vector256.Sum(a2); sums[3] = Vector256.Sum(a3);
        sums[4] = Vector256.Sum(b0); sums[5] = Vector256.Sum(b1); sums[6] = Vector256.Sum(b2); sums[7] = Vector256.Sum(b3);
        for (; k < length; k++)
        {
            float s0 = TWeight.At(w0, k), s1 = TWeight.At(w1, k), s2 = TWeight.At(w2, k), s3 = TWeight.At(w3, k);
            sums[0] += s0 * xa[k]; sums[1] += s1 * xa[k]; sums[2] += s2 * xa[k]; sums[3] += s3 * xa[k];
            sums[4] += s0 * xb[k]; sums[5] += s1 * xb[k]; sums[6] += s2 * xb[k]; sums[7] += s3 * xb[k];
        }
        return sums;
    }

    /// <summary>Asks for the same place <see cref="PrefetchRowsAhead"/> rows further on. The hardware prefetcher stops
    /// at every 4 KiB page, about one or two rows here, so without this each thread waits on memory at every page.
    /// A prefetch past W's end is harmless: it never faults.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Prefetch<TWeight>(byte* w0, byte* w1, byte* w2, byte* w3, int k, long ahead) where TWeight : struct, IWeightRow
    {
        long offset = (long)k * TWeight.ElementBytes + ahead;
        Sse.Prefetch0(w0 + offset);
        Sse.Prefetch0(w1 + offset);
        Sse.Prefetch0(w2 + offset);
        Sse.Prefetch0(w3 + offset);
    }

    [InlineArray(2 * WeightRowsPerBlock)]
    struct Sums
    {
        float first;
    }

    /// <summary>How a weight row's elements become fp32 vectors.</summary>
    interface IWeightRow
    {
        static abstract int ElementBytes { get; }

        /// <summary>Elements k … k+7 of the row as fp32.</summary>
        static abstract Vector256<float> Load(byte* row, int k);

        static abstract float At(byte* row, int k);
    }

    struct Float32Weight : IWeightRow
    {
        public static int ElementBytes => 4;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(byte* row, int k) => Vector256.Load((float*)row + k);

        public static float At(byte* row, int k) => ((float*)row)[k];
    }

    /// <summary>bfloat16 is the upper half of a float32: its bits shifted up 16 are the exact value.</summary>
    struct BFloat16Weight : IWeightRow
    {
        public static int ElementBytes => 2;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(byte* row, int k) =>
            Vector256.ShiftLeft(Avx2.ConvertToVector256Int32(Vector128.Load((ushort*)row + k)), 16).AsSingle();

        public static float At(byte* row, int k) => BitConverter.Int32BitsToSingle(((ushort*)row)[k] << 16);
    }
}
