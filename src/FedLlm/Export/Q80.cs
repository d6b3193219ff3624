using System.Buffers.Binary;

namespace FedLlm.Export;

/// <summary>
/// ggml's Q8_0 quantisation (quantize_row_q8_0_ref): per block of 32 weights, d = max|x| / 127 stored as fp16, and
/// q = round(x / d) as int8, rounding halves away from zero. Dequantised weight = d · q.
/// </summary>
/// <remarks>
/// The quotient uses the float32 d, not its fp16 rounding, as ggml and gguf-py do; so q·fp16(d) can differ from x by
/// slightly more than half a step. Matching them bit for bit keeps our files identical to the reference converter's.
/// </remarks>
public static class Q80
{
    /// <summary>Weights per block (32).</summary>
    public const int BlockSize = 32;

    /// <summary>2 bytes of fp16 scale + 32 int8 values.</summary>
    public const int BlockBytes = 2 + BlockSize;

    /// <summary>Quantises <paramref name="values"/> (a multiple of 32 long) into <paramref name="destination"/>.</summary>
    public static void Quantize(ReadOnlySpan<float> values, Span<byte> destination)
    {
        if (values.Length % BlockSize != 0) throw new ArgumentException($"Q8_0 needs a multiple of {BlockSize} values, got {values.Length}");
        if (destination.Length != values.Length / BlockSize * BlockBytes) throw new ArgumentException("destination has the wrong size");
        for (int block = 0; block < values.Length / BlockSize; block++)
        {
            var x = values.Slice(block * BlockSize, BlockSize);
            var y = destination.Slice(block * BlockBytes, BlockBytes);
            float amax = 0;
            foreach (float v in x) amax = Math.Max(amax, Math.Abs(v));
            float d = amax / 127f;
            float inverse = d != 0 ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(y, (Half)d);
            for (int j = 0; j < BlockSize; j++)
                y[2 + j] = unchecked((byte)(sbyte)MathF.Round(x[j] * inverse, MidpointRounding.AwayFromZero));
        }
    }

    /// <summary>The weights a Q8_0 buffer stands for (tests and error measurements).</summary>
    public static float[] Dequantize(ReadOnlySpan<byte> source)
    {
        if (source.Length % BlockBytes != 0) throw new ArgumentException("not a whole number of Q8_0 blocks");
        var values = new float[source.Length / BlockBytes * BlockSize];
        for (int block = 0; block < values.Length / BlockSize; block++)
        {
            var y = source.Slice(block * BlockBytes, BlockBytes);
            float d = (float)BinaryPrimitives.ReadHalfLittleEndian(y);
            for (int j = 0; j < BlockSize; j++) values[block * BlockSize + j] = d * (sbyte)y[2 + j];
        }
        return values;
    }
}
