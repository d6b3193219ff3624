using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Peft;

/// <summary>
/// Keep-masks of inverted dropout (element kept with probability 1 − p), drawn from a counter-based generator in
/// parallel: element i's uniform is a 32-bit half of the (i / 2)-th output of SplitMix64 keyed by one 63-bit number
/// drawn from a torch <see cref="Generator"/>.
/// </summary>
/// <remarks>
/// Why not <c>rand(...).ge(p)</c> or <c>bernoulli_</c>: libtorch's CPU kernels for both run one Mersenne Twister serially
/// (its parallel MKL bernoulli is used on Intel CPUs only), so on LoRA's seven inputs per layer the draws held one core
/// while the other waited. Here every element's value is a pure function of (key, index), so blocks are drawn on all
/// threads and the mask does not depend on the thread count. The key comes from the generator, so a generator's state
/// still fixes the masks: seeding it per step (AdapterTrainer) and replaying its saved state (activation checkpointing)
/// work as before. An element is dropped when its uniform u ∈ {0 … 2³² − 1} is below ⌈p · 2³²⌉, so the drop
/// probability is p up to 2⁻³², finer than the float32 uniforms (2⁻²⁴) the previous masks compared against.
/// </remarks>
public static class DropoutMask
{
    const ulong Gamma = 0x9E3779B97F4A7C15UL;

    // Elements per parallel block (even, so a block starts on a whole SplitMix64 output); large enough that
    // scheduling costs nothing next to the draws.
    const int BlockElements = 1 << 18;

    /// <summary>A bool tensor shaped like <paramref name="like"/>, on its device: true = keep (probability 1 − <paramref name="p"/>).</summary>
    /// <param name="like">The tensor to be dropped out (only its shape and device are read).</param>
    /// <param name="p">Drop probability, in [0, 1).</param>
    /// <param name="generator">Where the mask's key is drawn from (a CPU generator, or one of <paramref name="like"/>'s device).</param>
    public static Tensor Keep(Tensor like, double p, Generator generator) => Draw(p, generator).Keep(like);

    /// <summary>Draws the key of one mask from <paramref name="generator"/>: the mask itself can then be made (and made
    /// again, e.g. in backward) from the key alone.</summary>
    /// <param name="p">Drop probability, in [0, 1).</param>
    /// <param name="generator">Where the key is drawn from.</param>
    public static DropoutKey Draw(double p, Generator generator)
    {
        if (p is < 0 or >= 1 || double.IsNaN(p)) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1)");
        using var drawn = randint(0, long.MaxValue, [1], ScalarType.Int64, generator.device, generator: generator);
        return new DropoutKey((ulong)drawn.cpu().item<long>(), p);
    }

    /// <summary>The keep-mask of <paramref name="key"/> shaped like <paramref name="like"/>, on its device.</summary>
    internal static Tensor Keep(Tensor like, DropoutKey key)
    {
        var mask = empty(like.shape, ScalarType.Bool, CPU);
        Fill(mask, key.Key, key.P);
        if (like.device.type == DeviceType.CPU) return mask;
        using (mask) return mask.to(like.device);
    }

    /// <summary>The drop threshold on a 32-bit uniform: ⌈p · 2³²⌉ (p = 0 keeps everything).</summary>
    internal static ulong Threshold(double p) => (ulong)Math.Ceiling(p * 4294967296.0);

    /// <summary>Element <paramref name="index"/>'s 32-bit uniform under <paramref name="key"/> (the reference the fast loop must equal).</summary>
    internal static uint Uniform(ulong key, long index)
    {
        ulong z = Mix(key + (ulong)(index / 2 + 1) * Gamma);
        return index % 2 == 0 ? (uint)z : (uint)(z >> 32);
    }

    static Vector256<ulong> Mix(Vector256<ulong> z)
    {
        z = (z ^ Vector256.ShiftRightLogical(z, 30)) * Vector256.Create(0xBF58476D1CE4E5B9UL);
        z = (z ^ Vector256.ShiftRightLogical(z, 27)) * Vector256.Create(0x94D049BB133111EBUL);
        return z ^ Vector256.ShiftRightLogical(z, 31);
    }

    // Bit j of the index → byte j of the value (0 or 1): eight bool elements written as one 64-bit store.
    static readonly ulong[] SpreadBits = Enumerable.Range(0, 256)
        .Select(bits => Enumerable.Range(0, 8).Aggregate(0UL, (value, j) => value | ((ulong)((bits >> j) & 1) << (8 * j))))
        .ToArray();

    static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    // Elements per piece of the mask's memory: a span is int-indexed. A multiple of the block size, so pieces change
    // nothing about which element gets which uniform.
    const long PieceElements = 1L << 30;

    static void Fill(Tensor mask, ulong key, double p)
    {
        ulong threshold = Threshold(p);
        Checkpoints.TensorMemory.ForEachPiece(mask, PieceElements, (bytes, first) => FillPiece(bytes, first, key, threshold));
    }

    static unsafe void FillPiece(Span<byte> bytes, long offset, ulong key, ulong threshold)
    {
        long count = bytes.Length; // 1 byte per bool
        fixed (byte* start = bytes)
        {
            byte* data = start;
            long blocks = (count + BlockElements - 1) / BlockElements;
            Parallel.For(0L, blocks, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, TorchSharp.torch.get_num_threads()) }, block =>
            {
                long first = block * BlockElements;
                long end = Math.Min(count, first + BlockElements);
                ulong z = key + (ulong)((offset + first) / 2) * Gamma; // offset is even: pairs never straddle pieces
                long i = first;
                if (Vector256.IsHardwareAccelerated && threshold <= uint.MaxValue)
                {
                    // Four SplitMix64 outputs at once; as uint lanes they are (low, high) halves in element order.
                    var states = Vector256.Create(z + Gamma, z + unchecked(2 * Gamma), z + unchecked(3 * Gamma), z + unchecked(4 * Gamma));
                    var stride = Vector256.Create(unchecked(4 * Gamma));
                    var limit = Vector256.Create((uint)threshold);
                    for (; i + 8 <= end; i += 8)
                    {
                        var r = Mix(states);
                        uint kept = Vector256.GreaterThanOrEqual(r.AsUInt32(), limit).ExtractMostSignificantBits();
                        *(ulong*)(data + i) = SpreadBits[kept];
                        states += stride;
                    }
                    z += (ulong)((i - first) / 2) * Gamma;
                }
                for (; i + 1 < end; i += 2)
                {
                    z += Gamma;
                    ulong r = Mix(z);
                    data[i] = (byte)((uint)r >= threshold ? 1 : 0);
                    data[i + 1] = (byte)((r >> 32) >= threshold ? 1 : 0);
                }
                if (i < end) data[i] = (byte)((uint)Mix(z + Gamma) >= threshold ? 1 : 0);
            });
        }
    }
}

/// <summary>What fixes one dropout mask: its counter-based generator's key and the drop probability. 16 bytes instead of
/// the mask's byte per element, so an autograd node can keep this and make the mask again in backward.</summary>
/// <param name="Key">The 63-bit SplitMix64 key drawn from a torch generator.</param>
/// <param name="P">Drop probability, in [0, 1).</param>
public readonly record struct DropoutKey(ulong Key, double P)
{
    /// <summary>Inverted dropout's factor for the kept elements, 1 / (1 − p).</summary>
    public double Scale => 1.0 / (1.0 - P);

    /// <summary>The bool keep-mask shaped like <paramref name="like"/>, on its device (true = keep).</summary>
    public Tensor Keep(Tensor like) => DropoutMask.Keep(like, this);
}
