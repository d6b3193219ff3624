using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>
/// 4-bit NormalFloat (NF4) blockwise quantisation of QLoRA (Dettmers et al., 2023, "QLoRA: Efficient Finetuning of
/// Quantized LLMs", §3), with optional double quantisation of the block scales.
/// </summary>
/// <remarks>
/// <para>
/// The weight is flattened (row-major) and cut into blocks of 64 (the last one zero-padded). Each block stores its
/// absmax and, per value, the index of the nearest of 16 NF4 levels to value / absmax; two indices share a byte, the
/// first in the high nibble (bitsandbytes' packing). Nearest means: above the midpoint between two levels goes up,
/// at or below it goes down (bitsandbytes' dQuantizeNF4 decision tree, torch.bucketize with right = false).
/// </para>
/// <para>
/// Double quantisation (QLoRA §3, bitsandbytes' compress_statistics): the float32 absmax values, minus their mean, are
/// quantised to 8 bits in blocks of 256 with <see cref="DynamicMap8"/>; this costs 8 + 32/256 bits per 64 weights
/// instead of 32. The reference, tests/reference/quant/make_quant_golden.py, follows the same steps in PyTorch.
/// </para>
/// </remarks>
public static class Nf4Quantizer
{
    /// <summary>Weights per NF4 block, each block scaled by its own absmax (64, as QLoRA).</summary>
    public const int BlockSize = 64;

    /// <summary>Block scales per second-level block when the scales are double-quantised (256, as QLoRA).</summary>
    public const int ScaleBlockSize = 256;

    /// <summary>The 16 NF4 levels as bitsandbytes tabulates them (create_normal_map(offset = 0.9677083), float32).</summary>
    public static readonly float[] Levels =
    {
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
        -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
        0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    };

    /// <summary>Values quantised at once: a multiple of <see cref="BlockSize"/>, so chunks never split a block.</summary>
    const long ChunkValues = BlockSize * 16384L;

    /// <summary>Quantises any float tensor; the result remembers its shape.</summary>
    /// <remarks>
    /// Works through the tensor a chunk of 1 Mi values at a time, so the float32 copy and the level indices (int64) of
    /// one chunk are the only transients: streaming a checkpoint then peaks at the quantised model plus one tensor as
    /// stored, not plus that tensor's float32 and int64 working copies. Blocks are independent, so this equals
    /// quantising the whole tensor at once.
    /// </remarks>
    public static Nf4Tensor Quantize(Tensor weight, bool doubleQuant)
    {
        using var scope = NewDisposeScope();
        var shape = weight.shape;
        if (CpuQuantizeKernels.Supports(weight))
        {
            // One pass over the weight's memory (bitwise the same codes and scales as the tensor code below).
            var (codes, scales) = CpuQuantizeKernels.Nf4(weight);
            Nf4Tensor fast = doubleQuant
                ? Nf4Tensor.WithQuantizedScales(shape, codes, BlockwiseScaleQuantizer.Quantize(scales))
                : Nf4Tensor.WithScales(shape, codes, scales);
            fast.MoveToOuterDisposeScope();
            return fast;
        }
        return QuantizeWithTensors(weight, doubleQuant);
    }

    /// <summary>The libtorch formulation: any device and dtype, and the reference the CPU kernel must equal bit for bit.</summary>
    internal static Nf4Tensor QuantizeWithTensors(Tensor weight, bool doubleQuant)
    {
        using var scope = NewDisposeScope();
        var shape = weight.shape;
        var flat = weight.reshape(-1);
        long n = flat.shape[0];
        var packedChunks = new List<Tensor>();
        var absmaxChunks = new List<Tensor>();
        for (long start = 0; start < n; start += ChunkValues)
        {
            using var chunkScope = NewDisposeScope();
            var chunk = flat.narrow(0, start, Math.Min(ChunkValues, n - start)).to(ScalarType.Float32);
            var (blocks, _) = Blocked(chunk, BlockSize);                                   // (nb, 64)
            var absmax = blocks.abs().amax(new long[] { 1 });                               // (nb)
            var indices = NearestLevel(blocks, absmax, Levels);                             // (nb, 64) int64
            var pairs = indices.view(-1, 2);                                                // (nb*32, 2)
            var packed = (pairs.select(1, 0).bitwise_left_shift(4) | pairs.select(1, 1)).to(ScalarType.Byte); // (nb*32)
            packedChunks.Add(packed.MoveToOuterDisposeScope());
            absmaxChunks.Add(absmax.MoveToOuterDisposeScope());
        }
        var packedAll = packedChunks.Count == 1 ? packedChunks[0] : cat(packedChunks, 0);
        var absmaxAll = absmaxChunks.Count == 1 ? absmaxChunks[0] : cat(absmaxChunks, 0);
        Nf4Tensor result = doubleQuant
            ? Nf4Tensor.WithQuantizedScales(shape, packedAll, BlockwiseScaleQuantizer.Quantize(absmaxAll))
            : Nf4Tensor.WithScales(shape, packedAll, absmaxAll);
        result.MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>Index of the nearest level to each value / its row's absmax (an all-zero block divides by 1).</summary>
    internal static Tensor NearestLevel(Tensor blocks, Tensor absmax, float[] levels)
    {
        using var scope = NewDisposeScope();
        var safe = where(absmax.eq(0), ones_like(absmax, device: absmax.device), absmax).unsqueeze(1); // (nb, 1)
        var normalized = blocks / safe;                                          // (nb, block)
        var table = tensor(levels);
        var midpoints = (table.narrow(0, 0, levels.Length - 1) + table.narrow(0, 1, levels.Length - 1)) / 2.0; // (levels-1)
        return bucketize(normalized, midpoints, right: false).MoveToOuterDisposeScope();
    }

    /// <summary>A flat float32 tensor zero-padded to whole blocks: (blocks, size) and the number of padded values.</summary>
    internal static (Tensor Blocks, long Padding) Blocked(Tensor flat, int size)
    {
        long n = flat.shape[0];
        long padding = (size - n % size) % size;
        var padded = padding == 0 ? flat.alias() : nn.functional.pad(flat, new[] { 0L, padding });
        return (padded.view(-1, size), padding);
    }

    /// <summary>levels[index] · absmax per block, cut to <paramref name="count"/> values (float32, flat).</summary>
    internal static Tensor LookUp(Tensor indices, Tensor absmax, float[] levels, long count)
    {
        using var scope = NewDisposeScope();
        var table = tensor(levels, device: indices.device);
        var values = table.index_select(0, indices.reshape(-1)).view(absmax.shape[0], -1); // (nb, block)
        values.mul_(absmax.unsqueeze(1));
        return values.reshape(-1).narrow(0, 0, count).MoveToOuterDisposeScope();
    }
}
