namespace FedLlm.Federation.SecureAggregation;

/// <summary>
/// Vectors over the ring Z_{2^32}: unsigned 32-bit integers whose addition wraps, so a masked value plus its mask's
/// negation is exact whatever the mask. Masks are uniform on the ring, so a masked vector is uniform too.
/// </summary>
public static class Ring32
{
    /// <summary>Number of elements of the ring.</summary>
    public const ulong Modulus = 1UL << 32;

    /// <summary>a += b (mod 2^32), element-wise.</summary>
    public static void AddInPlace(Span<uint> a, ReadOnlySpan<uint> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"ring vectors of lengths {a.Length} and {b.Length}");
        for (int i = 0; i < a.Length; i++) a[i] = unchecked(a[i] + b[i]);
    }

    /// <summary>a −= b (mod 2^32), element-wise.</summary>
    public static void SubtractInPlace(Span<uint> a, ReadOnlySpan<uint> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"ring vectors of lengths {a.Length} and {b.Length}");
        for (int i = 0; i < a.Length; i++) a[i] = unchecked(a[i] - b[i]);
    }
}
