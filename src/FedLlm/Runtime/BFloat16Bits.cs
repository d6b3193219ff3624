using System.Runtime.Intrinsics;

namespace FedLlm.Runtime;

/// <summary>bfloat16 values as their bit patterns (the upper half of a float32's), converted without libtorch.</summary>
internal static class BFloat16Bits
{
    /// <summary>bf16 → fp32, exactly: the bits shifted up 16, which is also what libtorch computes (NaN payloads
    /// included).</summary>
    public static void Widen(ReadOnlySpan<ushort> from, Span<float> into)
    {
        if (into.Length < from.Length) throw new ArgumentException("the destination is shorter than the source", nameof(into));
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + Vector256<ushort>.Count <= from.Length; i += Vector256<ushort>.Count)
            {
                var (lower, upper) = Vector256.Widen(Vector256.Create(from[i..]));  // 16 × u16 → 2 × (8 × u32), in order
                Vector256.ShiftLeft(lower, 16).AsSingle().CopyTo(into[i..]);
                Vector256.ShiftLeft(upper, 16).AsSingle().CopyTo(into[(i + Vector256<uint>.Count)..]);
            }
        }
        for (; i < from.Length; i++) into[i] = BitConverter.UInt32BitsToSingle((uint)from[i] << 16);
    }

    /// <summary>fp32 → bf16 with round to nearest, ties to even, as libtorch rounds; NaN stays a (quiet) NaN.</summary>
    public static ushort Round(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}
