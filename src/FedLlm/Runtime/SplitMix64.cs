namespace FedLlm.Runtime;

/// <summary>
/// SplitMix64 (Steele, Lea and Flood 2014; Vigna's reference C code): a tiny generator whose every output is fixed by
/// the seed, on any runtime.
/// </summary>
/// <remarks>
/// Used instead of <see cref="Random"/> so the default data set is a documented function of its seed that could be
/// reproduced in another language; System.Random's seeded algorithm is an implementation detail of .NET.
/// </remarks>
internal sealed class SplitMix64(ulong seed)
{
    private ulong _state = seed;

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        var z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A uniform integer in [0, <paramref name="exclusiveMax"/>), without modulo bias.</summary>
    public int NextInt(int exclusiveMax)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(exclusiveMax);
        var bound = (ulong)exclusiveMax;
        // Reject the lowest (2^64 mod bound) values so every residue is equally likely.
        var threshold = (0UL - bound) % bound;
        while (true)
        {
            var r = NextUInt64();
            if (r >= threshold) return (int)(r % bound);
        }
    }

    /// <summary>A uniform double in [0, 1): the top 53 bits, so every value is a multiple of 2^-53.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Fisher-Yates shuffle in place, drawing from the end as Knuth's algorithm P does.</summary>
    public void Shuffle<T>(IList<T> items)
    {
        for (var i = items.Count - 1; i > 0; i--)
        {
            var j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }
}
