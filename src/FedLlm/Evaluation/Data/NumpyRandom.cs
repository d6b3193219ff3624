namespace FedLlm.Evaluation.Data;

/// <summary>
/// numpy's <c>np.random.default_rng(seed)</c> as far as <c>permutation(n)</c>: a SeedSequence expands the seed into the
/// state of a PCG64 (XSL-RR 128/64) generator, and the permutation is a Fisher–Yates shuffle of 0..n−1 drawing bounded
/// integers by masked rejection. Ported so that Hugging Face datasets' seeded splits (which call exactly this) can be
/// reproduced without Python; a test checks it against numpy's own output.
/// </summary>
/// <remarks>O'Neill 2014, "PCG: A Family of Simple Fast Space-Efficient Statistically Good Algorithms for Random Number
/// Generation"; SeedSequence follows numpy/random/bit_generator.pyx (after M. O'Neill's seed_seq).</remarks>
public sealed class NumpyRandom
{
    static readonly UInt128 Multiplier = new(2549297995355413924UL, 4865540595714422341UL);
    UInt128 state, increment;
    bool hasHalf;
    uint half;

    /// <summary>numpy's <c>default_rng(seed)</c>: a PCG64 generator seeded through SeedSequence, so its draws match
    /// numpy's.</summary>
    public NumpyRandom(ulong seed)
    {
        var words = SeedSequenceState(seed, 8);
        // generate_state(4, uint64): pairs of 32-bit words, little-endian; seed = s[0]·2^64 + s[1], inc likewise.
        ulong W(int i) => words[2 * i] | (ulong)words[2 * i + 1] << 32;
        var initState = new UInt128(W(0), W(1));
        var initSeq = new UInt128(W(2), W(3));
        increment = (initSeq << 1) | 1;
        state = 0;
        Step();
        state += initState;
        Step();
    }

    void Step() => state = state * Multiplier + increment;

    /// <summary>The next raw 64-bit output (PCG64's XSL-RR step).</summary>
    public ulong NextUInt64()
    {
        Step();
        ulong hi = (ulong)(state >> 64), lo = (ulong)state;
        int rotation = (int)(hi >> 58);
        return ulong.RotateRight(hi ^ lo, rotation);
    }

    /// <summary>numpy's next_uint32 for PCG64: the low half of a 64-bit draw, then its high half.</summary>
    public uint NextUInt32()
    {
        if (hasHalf) { hasHalf = false; return half; }
        ulong next = NextUInt64();
        hasHalf = true;
        half = (uint)(next >> 32);
        return (uint)next;
    }

    /// <summary>numpy's random_interval: uniform in [0, max] by masking to the next power of two and rejecting.</summary>
    public ulong Interval(ulong max)
    {
        if (max == 0) return 0;
        ulong mask = max;
        mask |= mask >> 1; mask |= mask >> 2; mask |= mask >> 4; mask |= mask >> 8; mask |= mask >> 16; mask |= mask >> 32;
        ulong value;
        if (max <= uint.MaxValue) { while ((value = NextUInt32() & mask) > max) { } }
        else { while ((value = NextUInt64() & mask) > max) { } }
        return value;
    }

    /// <summary><c>Generator.permutation(n)</c>: arange(n) shuffled from the last position down.</summary>
    public int[] Permutation(int n)
    {
        var values = Enumerable.Range(0, n).ToArray();
        for (int i = n - 1; i >= 1; i--)
        {
            int j = (int)Interval((ulong)i);
            (values[i], values[j]) = (values[j], values[i]);
        }
        return values;
    }

    /// <summary>SeedSequence(seed).generate_state(count, uint32) for a non-negative integer seed, no spawn key.</summary>
    public static uint[] SeedSequenceState(ulong seed, int count)
    {
        const uint InitA = 0x43b0d7e5, MultA = 0x931e8875, InitB = 0x8b51f9dd, MultB = 0x58f38ded;
        const uint MixMultL = 0xca01f9dd, MixMultR = 0x4973f715;
        const int PoolSize = 4, XShift = 16;
        // The seed as little-endian 32-bit words (at least one).
        var entropy = new List<uint> { (uint)seed };
        if (seed >> 32 != 0) entropy.Add((uint)(seed >> 32));

        uint hashConst = InitA;
        uint HashMix(uint value)
        {
            value ^= hashConst;
            hashConst *= MultA;
            value *= hashConst;
            value ^= value >> XShift;
            return value;
        }
        static uint Mix(uint x, uint y)
        {
            uint result = MixMultL * x - MixMultR * y;
            return result ^ (result >> XShift);
        }

        var pool = new uint[PoolSize];
        for (int i = 0; i < PoolSize; i++) pool[i] = HashMix(i < entropy.Count ? entropy[i] : 0);
        for (int src = 0; src < PoolSize; src++)
            for (int dst = 0; dst < PoolSize; dst++)
                if (src != dst) pool[dst] = Mix(pool[dst], HashMix(pool[src]));
        for (int src = PoolSize; src < entropy.Count; src++)
            for (int dst = 0; dst < PoolSize; dst++)
                pool[dst] = Mix(pool[dst], HashMix(entropy[src]));

        var output = new uint[count];
        uint outConst = InitB;
        for (int i = 0; i < count; i++)
        {
            uint value = pool[i % PoolSize];
            value ^= outConst;
            outConst *= MultB;
            value *= outConst;
            value ^= value >> XShift;
            output[i] = value;
        }
        return output;
    }
}
