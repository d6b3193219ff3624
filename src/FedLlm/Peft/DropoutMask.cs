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
        Fill(mask, key);
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

    /// <summary>x with the elements <paramref name="key"/>'s mask drops set to zero (unscaled), as x ⊙ keep but in one
    /// pass and without a mask tensor: a contiguous CPU float32, bfloat16 or float16 x is read once and the result
    /// written once; anything else goes through <see cref="Keep(Tensor, DropoutKey)"/> and a multiply.</summary>
    /// <remarks>A dropped element becomes +0 (x ⊙ keep would give −0 for a negative x and NaN for a NaN); the kept
    /// ones are x's own bits.</remarks>
    internal static unsafe Tensor Zeroed(Tensor x, DropoutKey key)
    {
        bool direct = x.device.type == DeviceType.CPU && x.is_contiguous()
            && x.dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16;
        if (!direct)
        {
            using var keep = Keep(x, key);
            return x * keep;
        }
        var result = empty_like(x);
        long count = x.numel();
        if (count == 0) return result;
        ulong threshold = Threshold(key.P);
        nint source = Checkpoints.TensorMemory.Address(x), target = Checkpoints.TensorMemory.Address(result);
        if (x.dtype == ScalarType.Float32)
            Walk(new SelectFloat32 { Source = (float*)source, Target = (float*)target }, count, key.Key, threshold);
        else
            Walk(new SelectHalfWidth { Source = (ushort*)source, Target = (ushort*)target }, count, key.Key, threshold);
        return result;
    }

    static unsafe void Fill(Tensor mask, DropoutKey key)
    {
        long count = mask.numel();
        if (count == 0) return;
        Walk(new BoolMask { Data = (byte*)Checkpoints.TensorMemory.Address(mask) }, count, key.Key, Threshold(key.P));
    }

    /// <summary>What the walk does with the keep bits of elements i … i + 7 (bit j = element i + j), or of one element.</summary>
    interface IKeepSink
    {
        void Eight(long i, uint kept);
        void One(long i, bool kept);
    }

    unsafe struct BoolMask : IKeepSink
    {
        public byte* Data;
        public void Eight(long i, uint kept) => *(ulong*)(Data + i) = SpreadBits[kept];
        public void One(long i, bool kept) => Data[i] = (byte)(kept ? 1 : 0);
    }

    unsafe struct SelectFloat32 : IKeepSink
    {
        public float* Source, Target;
        static readonly Vector256<int> Lanes = Vector256.Create(1, 2, 4, 8, 16, 32, 64, 128);
        public void Eight(long i, uint kept)
        {
            var keep = Vector256.Equals(Vector256.Create((int)kept) & Lanes, Lanes).AsSingle();
            Vector256.Store(Vector256.ConditionalSelect(keep, Vector256.Load(Source + i), Vector256<float>.Zero), Target + i);
        }
        public void One(long i, bool kept) => Target[i] = kept ? Source[i] : 0f;
    }

    /// <summary>bfloat16 and float16 alike: a kept element's 16 bits are copied, a dropped one becomes +0 (all bits 0).</summary>
    unsafe struct SelectHalfWidth : IKeepSink
    {
        public ushort* Source, Target;
        static readonly Vector128<ushort> Lanes = Vector128.Create((ushort)1, 2, 4, 8, 16, 32, 64, 128);
        public void Eight(long i, uint kept)
        {
            var keep = Vector128.Equals(Vector128.Create((ushort)kept) & Lanes, Lanes);
            Vector128.Store(Vector128.ConditionalSelect(keep, Vector128.Load(Source + i), Vector128<ushort>.Zero), Target + i);
        }
        public void One(long i, bool kept) => Target[i] = kept ? Source[i] : (ushort)0;
    }

    /// <summary>Draws the keep bit of every element 0 … count − 1 under <paramref name="key"/> in parallel blocks and
    /// hands them to <paramref name="sink"/>; which element gets which uniform does not depend on the blocks.</summary>
    static void Walk<TSink>(TSink sink, long count, ulong key, ulong threshold) where TSink : struct, IKeepSink
    {
        long blocks = (count + BlockElements - 1) / BlockElements;
        Parallel.For(0L, blocks, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, TorchSharp.torch.get_num_threads()) }, block =>
        {
            var local = sink;
            long first = block * BlockElements;
            long end = Math.Min(count, first + BlockElements);
            ulong z = key + (ulong)(first / 2) * Gamma; // first is even: pairs never straddle blocks
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
                    local.Eight(i, Vector256.GreaterThanOrEqual(r.AsUInt32(), limit).ExtractMostSignificantBits());
                    states += stride;
                }
                z += (ulong)((i - first) / 2) * Gamma;
            }
            for (; i + 1 < end; i += 2)
            {
                z += Gamma;
                ulong r = Mix(z);
                local.One(i, (uint)r >= threshold);
                local.One(i + 1, (r >> 32) >= threshold);
            }
            if (i < end) local.One(i, (uint)Mix(z + Gamma) >= threshold);
        });
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
