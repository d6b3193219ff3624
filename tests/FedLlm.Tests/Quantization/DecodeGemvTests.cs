using FedLlm.Quantization;
using FedLlm.Runtime;
using static TorchSharp.torch;

namespace FedLlm.Tests.Quantization;

/// <summary><see cref="DecodeGemv"/>: the decode step's products of few rows, against fp64 and libtorch's rounding.</summary>
public class DecodeGemvTests
{
    // 301 × 250 = 75,250 weight elements, above the size split among threads; 250 columns end in a 2-element scalar
    // tail after 31 vectors, and 301 rows end in a block of one row.
    const int Out = 301, In = 250;

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 2)]
    [InlineData(1, 3)]
    [InlineData(2, 2)]
    [InlineData(3, 2)]   // an odd row count: the last input row has no partner
    [InlineData(8, 2)]
    [InlineData(8, 3)]
    public unsafe void Fp32_products_equal_fp64_to_fp32_rounding_whatever_the_thread_count(int rows, int threads)
    {
        // Prepare
        using var generator = new Generator(11);
        using var weight = randn(new long[] { Out, In }, generator: generator);      // (out, in)
        using var x = randn(new long[] { rows, In }, generator: generator);          // (rows, in)
        using var expected = nn.functional.linear(x.to(ScalarType.Float64), weight.to(ScalarType.Float64));

        // Execute
        using var actual = Multiply(x, weight, threads);
        using var alone = Multiply(x, weight, threads: 1);

        // Assert: fp32 sums of 250 products of unit normals are within 1e-4 of the exact value; each output is the same
        // kernel's sum whichever thread took its row, so the thread count changes no bit
        using var difference = (actual.to(ScalarType.Float64) - expected).abs();
        Assert.True(difference.max().item<double>() < 1e-4, $"max difference {difference.max().item<double>()}");
        Assert.True(actual.eq(alone).all().item<bool>());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    public void Bf16_products_are_the_fp32_sum_rounded_once_to_within_one_bf16_step(int rows)
    {
        // Prepare: bf16 operands; their exact products summed in fp64, then rounded to bf16, is the best a bf16
        // product can return
        using var generator = new Generator(12);
        using var weight = randn(new long[] { Out, In }, generator: generator).to(ScalarType.BFloat16);
        using var x = randn(new long[] { rows, In }, generator: generator).to(ScalarType.BFloat16);
        using var exact = nn.functional.linear(x.to(ScalarType.Float64), weight.to(ScalarType.Float64));

        // Execute
        using var actual = Multiply(x, weight, threads: 2);

        // Assert: a bf16 result, at most one bf16 step (2^-7 relative, 8 bits of mantissa) from the exact sum
        Assert.Equal(ScalarType.BFloat16, actual.dtype);
        using var actual64 = actual.to(ScalarType.Float64);
        using var step = exact.abs() * Math.Pow(2, -7) + 1e-30;
        using var excess = (actual64 - exact).abs() - step;
        Assert.True(excess.max().item<double>() <= 0, $"exceeds one step by {excess.max().item<double>()}");
        // and most are the exact sum's nearest bf16 (the fp32 accumulation rarely moves a rounding)
        using var nearest = exact.to(ScalarType.BFloat16).to(ScalarType.Float64);
        double same = actual64.eq(nearest).to(ScalarType.Float64).mean().item<double>();
        Assert.True(same > 0.95, $"only {same:P1} equal the exact sum's nearest bf16");
    }

    [Fact]
    public void Rounding_to_bf16_matches_libtorch_bit_for_bit()
    {
        // Prepare: zeros, infinities, the largest float, subnormals, exact ties either way and random values
        var values = new List<float>
        {
            0f, -0f, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, -float.MaxValue, float.Epsilon,
            -float.Epsilon, 1e-40f, 1f, -1f,
            1f + MathF.Pow(2, -8),          // halfway between 1 and the next bf16: ties to even, down to 1
            1f + 3 * MathF.Pow(2, -8),      // halfway with an odd lower neighbour: up
            BitConverter.UInt32BitsToSingle(0x7F7F8000),  // halfway to infinity: rounds to it
        };
        var random = new Random(13);
        for (int i = 0; i < 1000; i++) values.Add((float)(random.NextDouble() * 2 - 1) * MathF.Pow(2, random.Next(-130, 120)));
        using var source = tensor(values.ToArray());
        using var libtorch = source.to(ScalarType.BFloat16);
        var expected = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(libtorch.bytes).ToArray();

        // Execute and assert
        for (int i = 0; i < values.Count; i++)
            Assert.True(BFloat16Bits.Round(values[i]) == expected[i], $"{values[i]:R}: {BFloat16Bits.Round(values[i]):X4} vs {expected[i]:X4}");
        ushort nan = BFloat16Bits.Round(float.NaN);
        Assert.True(float.IsNaN(BitConverter.Int32BitsToSingle(nan << 16)));
    }

    [Fact]
    public void More_rows_than_the_kernels_take_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Call(rows: DecodeGemv.MaxRows + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Call(rows: 0));

        static unsafe void Call(int rows)
        {
            float value = 0;
            DecodeGemv.Multiply(&value, rows, &value, bf16: false, inFeatures: 1, &value, outFeatures: 1, threads: 1);
        }
    }

    static unsafe Tensor Multiply(Tensor x, Tensor weight, int threads)
    {
        var y = empty(new long[] { x.shape[0], weight.shape[0] }, x.dtype);
        fixed (byte* xs = x.bytes)
        fixed (byte* ws = weight.bytes)
        fixed (byte* ys = y.bytes)
            DecodeGemv.Multiply(xs, (int)x.shape[0], ws, weight.dtype == ScalarType.BFloat16, (int)weight.shape[1], ys, (int)weight.shape[0], threads);
        return y;
    }
}
