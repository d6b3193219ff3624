using FedLlm.Quantization;
using static TorchSharp.torch;

namespace FedLlm.Tests.Modeling;

/// <summary><see cref="DecodeLinear"/>: the products of a decode step against <c>linear</c>.</summary>
public class DecodeLinearTests
{
    [Theory]
    [InlineData(ScalarType.Float32, 1e-6, 1, false)]
    [InlineData(ScalarType.Float32, 1e-6, 2, true)]
    [InlineData(ScalarType.Float32, 1e-6, 3, false)]
    [InlineData(ScalarType.BFloat16, 1e-2, 2, true)]
    public void One_row_agrees_with_linear_to_rounding(ScalarType dtype, double tolerance, int threads, bool withBias)
    {
        // Prepare: 10 output rows with different values, so that a piece written to the wrong place changes the answer
        int previousThreads = get_num_threads();
        set_num_threads(threads);
        try
        {
            using var generator = new Generator(3);
            using var weight = randn(new long[] { 10, 6 }, generator: generator).to(dtype);  // (out, in)
            using var bias = withBias ? randn(new long[] { 10 }, generator: generator).to(dtype) : null;
            using var input = randn(new long[] { 1, 1, 6 }, generator: generator).to(dtype); // (B, T, in)
            using var _ = no_grad();
            using var expected = nn.functional.linear(input, weight, bias);

            // Execute
            using var actual = DecodeLinear.Forward(input, weight, bias);

            // Assert: the shape of linear's result and its values to the dtype's rounding
            Assert.Equal(expected.shape, actual.shape);
            Assert.Equal(dtype, actual.dtype);
            using var expected32 = expected.to(ScalarType.Float32);
            using var actual32 = actual.to(ScalarType.Float32);
            Assert.True(actual32.allclose(expected32, rtol: tolerance, atol: tolerance),
                $"max difference {(actual32 - expected32).abs().max().item<float>()}");
        }
        finally
        {
            set_num_threads(previousThreads);
        }
    }

    [Theory]
    [InlineData(2, 1, false)]   // two sequences, one new token each
    [InlineData(8, 1, true)]    // a batch of eight, the decode benchmark's
    [InlineData(2, 3, false)]   // a short prefill
    [InlineData(3, 3, true)]    // 9 rows: the fewest that take MKL's weight-stationary product
    [InlineData(16, 4, true)]   // 64 rows, the most that do
    public void A_few_rows_agree_with_linear_to_rounding(int batch, int tokens, bool withBias)
    {
        // Prepare: 10 output rows and distinct input rows, so a transposed or misplaced result changes the answer
        using var generator = new Generator(6);
        using var weight = randn(new long[] { 10, 6 }, generator: generator);             // (out, in)
        using var bias = withBias ? randn(new long[] { 10 }, generator: generator) : null;
        using var input = randn(new long[] { batch, tokens, 6 }, generator: generator);   // (B, T, in)
        using var _ = no_grad();
        using var expected = nn.functional.linear(input, weight, bias);

        // Execute
        using var actual = DecodeLinear.Forward(input, weight, bias);

        // Assert: linear's shape, a contiguous result (later views rely on it), its values to fp32 rounding
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(actual.is_contiguous());
        Assert.True(actual.allclose(expected, rtol: 1e-6, atol: 1e-6), $"max difference {(actual - expected).abs().max().item<float>()}");
    }

    [Fact]
    public void A_strided_input_of_a_few_rows_agrees_with_linear()
    {
        // Prepare: the last position of each sequence, a non-contiguous (B, in) view as LastLogits hands the head
        using var generator = new Generator(7);
        using var weight = randn(new long[] { 12, 5 }, generator: generator);
        using var hidden = randn(new long[] { 3, 4, 5 }, generator: generator);
        using var last = hidden.select(1, 3);                                              // (3, 5), strides (20, 1)
        using var _ = no_grad();

        // Execute
        using var actual = DecodeLinear.Forward(last, weight);

        // Assert
        using var expected = nn.functional.linear(last, weight);
        Assert.Equal(new long[] { 3, 12 }, actual.shape);
        Assert.True(actual.allclose(expected, rtol: 1e-6, atol: 1e-6));
    }

    [Fact]
    public void A_vector_input_gives_a_vector()
    {
        // Prepare
        using var generator = new Generator(4);
        using var weight = randn(new long[] { 8, 5 }, generator: generator);
        using var input = randn(new long[] { 5 }, generator: generator);
        using var _ = no_grad();

        // Execute
        using var actual = DecodeLinear.Forward(input, weight);

        // Assert
        using var expected = weight.mv(input);
        Assert.Equal(new long[] { 8 }, actual.shape);
        Assert.True(actual.allclose(expected, rtol: 1e-6, atol: 1e-6));
    }

    [Fact]
    public void Decode_shaped_products_over_fp32_and_bf16_agree_with_linear_to_rounding()
    {
        // Prepare: SmolLM's k projection (192 × 576), large enough to be shared among threads, one and eight rows
        using var generator = new Generator(8);
        using var weight = randn(new long[] { 192, 576 }, generator: generator);
        using var _ = no_grad();
        foreach (int rows in new[] { 1, 8 })
        {
            using var input = randn(new long[] { rows, 1, 576 }, generator: generator);
            using var expected = nn.functional.linear(input, weight);
            using var actual = DecodeLinear.Forward(input, weight);
            Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-4), $"fp32, {rows} rows: max difference {(actual - expected).abs().max().item<float>()}");

            // bf16: libtorch's bf16 linear also sums in fp32 and rounds once, so the two differ by at most a bf16 step
            using var weight16 = weight.to(ScalarType.BFloat16);
            using var input16 = input.to(ScalarType.BFloat16);
            using var expected16 = nn.functional.linear(input16, weight16).to(ScalarType.Float32);
            using var actual16 = DecodeLinear.Forward(input16, weight16);
            Assert.Equal(ScalarType.BFloat16, actual16.dtype);
            using var actual16As32 = actual16.to(ScalarType.Float32);
            using var step = expected16.abs() * (2 * Math.Pow(2, -8)) + 1e-6;
            Assert.True((actual16As32 - expected16).abs().le(step).all().item<bool>(), $"bf16, {rows} rows");
        }
    }

    [Fact]
    public void Many_rows_more_than_one_bf16_row_and_recorded_gradients_stay_on_linear_bit_for_bit()
    {
        // Prepare: the training forward must not change, so only gradient-free decode rows take other kernels
        using var generator = new Generator(5);
        using var weight = randn(new long[] { 10, 6 }, generator: generator);
        using var rows = randn(new long[] { 5, 13, 6 }, generator: generator);            // 65 rows: more than a decode step
        using var twoRows = randn(new long[] { 2, 1, 6 }, generator: generator);
        using var row = randn(new long[] { 1, 1, 6 }, generator: generator);
        using var trackedRow = row.detach().requires_grad_(true);

        // Execute and assert
        using (no_grad())
        {
            AssertIsLinear(rows, weight);
            using var bf16Rows = twoRows.to(ScalarType.BFloat16);
            using var bf16Weight = weight.to(ScalarType.BFloat16);
            AssertIsLinear(bf16Rows, bf16Weight);
        }
        AssertIsLinear(trackedRow, weight);
        using var tracked = DecodeLinear.Forward(trackedRow, weight);
        Assert.True(tracked.requires_grad);
    }

    static void AssertIsLinear(Tensor input, Tensor weight)
    {
        using var actual = DecodeLinear.Forward(input, weight);
        using var expected = nn.functional.linear(input, weight);
        Assert.True(actual.eq(expected).all().item<bool>());
    }
}
