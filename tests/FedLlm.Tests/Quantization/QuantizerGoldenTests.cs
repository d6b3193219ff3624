using FedLlm.Checkpoints;
using FedLlm.Quantization;
using FedLlm.Tests.Modeling;
using static TorchSharp.torch;

namespace FedLlm.Tests.Quantization;

/// <summary>
/// Quantise → dequantise of fixed tensors against the plain-PyTorch reference (tests/reference/quant/make_quant_golden.py):
/// codes and scales bit-equal, dequantised values equal. The fixtures hold round-half-even ties (int8), values exactly on
/// NF4 level midpoints, an all-zero row/block, a padded last block and three blocks of double-quantised scales.
/// </summary>
public class QuantizerGoldenTests
{
    static SafeTensorsFile Golden() => SafeTensorsFile.Open(Path.Combine(GoldenParityTests.GoldenDirectory("quant"), "golden.safetensors"));

    static void AssertEqual(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        long different = expected.ne(actual).sum().item<long>();
        Assert.True(different == 0, $"{what}: {different} of {expected.NumberOfElements} elements differ");
    }

    [Theory]
    [InlineData("int8_f32")]
    [InlineData("int8_bf16")]
    public void Int8_codes_scales_and_dequantised_values_equal_the_reference(string name)
    {
        using var golden = Golden();
        using var weight = golden.Read($"{name}.weight");
        var (codes, scales) = Int8RowwiseQuantizer.Quantize(weight);
        using var _codes = codes;
        using var _scales = scales;
        using var expectedCodes = golden.Read($"{name}.codes");
        using var expectedScales = golden.Read($"{name}.scales");
        using var expectedValues = golden.Read($"{name}.dequantized");
        AssertEqual(expectedCodes, codes, "codes");
        AssertEqual(expectedScales, scales, "scales");
        using var values = Int8RowwiseQuantizer.Dequantize(codes, scales, ScalarType.Float32);
        AssertEqual(expectedValues, values, "dequantised");
    }

    [Fact]
    public void Int8_rounds_ties_to_even_and_maps_a_zero_row_to_zero()
    {
        // Row 0: absmax 127 → scale exactly 1; 2.5 → 2 and −3.5 → −4 (half to even), which half-away-from-zero gets wrong.
        using var weight = tensor(new float[] { 127f, 2.5f, -3.5f, 0.5f, 0f, 0f, 0f, 0f }, new long[] { 2, 4 });
        var (codes, scales) = Int8RowwiseQuantizer.Quantize(weight);
        using var _c = codes;
        using var _s = scales;
        Assert.Equal(new sbyte[] { 127, 2, -4, 0, 0, 0, 0, 0 }, codes.data<sbyte>().ToArray());
        Assert.Equal(new float[] { 1f, 1f }, scales.data<float>().ToArray());
    }

    [Fact]
    public void Nf4_packed_indices_absmax_and_dequantised_values_equal_the_reference()
    {
        using var golden = Golden();
        using var weight = golden.Read("nf4.weight");
        using var q = Nf4Quantizer.Quantize(weight, doubleQuant: false);
        using var expectedPacked = golden.Read("nf4.packed");
        using var expectedAbsmax = golden.Read("nf4.absmax");
        using var expectedValues = golden.Read("nf4.dequantized");
        AssertEqual(expectedPacked, q.Packed, "packed");
        AssertEqual(expectedAbsmax, q.Absmax!, "absmax");
        using var values = q.Dequantize(ScalarType.Float32);
        AssertEqual(expectedValues, values, "dequantised");
    }

    [Fact]
    public void Nf4_values_on_a_midpoint_go_to_the_lower_level()
    {
        // Block: 1.0 (absmax), then the midpoint between levels 7 (0) and 8 (0.0796), and one just above it.
        var levels = Nf4Quantizer.Levels;
        float mid = (levels[7] + levels[8]) / 2f;
        var values = new float[64];
        values[0] = 1f;
        values[1] = mid;
        values[2] = MathF.BitIncrement(mid);
        using var weight = tensor(values);
        using var q = Nf4Quantizer.Quantize(weight, doubleQuant: false);
        using var indices = q.Indices();
        Assert.Equal(new long[] { 15, 7, 8, 7 }, indices.reshape(-1).narrow(0, 0, 4).data<long>().ToArray());
        Assert.Equal(0xF7, q.Packed[0].item<byte>()); // first index in the high nibble
    }

    [Fact]
    public void Nf4_with_double_quantised_scales_equals_the_reference()
    {
        using var golden = Golden();
        using var weight = golden.Read("nf4_dq.weight");
        using var q = Nf4Quantizer.Quantize(weight, doubleQuant: true);
        Assert.Null(q.Absmax);
        var scales = q.QuantizedAbsmax!;
        using var expectedPacked = golden.Read("nf4_dq.packed");
        using var expectedCodes = golden.Read("nf4_dq.absmax_codes");
        using var expectedScales = golden.Read("nf4_dq.absmax_scales");
        using var expectedOffset = golden.Read("nf4_dq.absmax_offset");
        using var expectedAbsmax = golden.Read("nf4_dq.absmax_dequantized");
        using var expectedValues = golden.Read("nf4_dq.dequantized");
        AssertEqual(expectedPacked, q.Packed, "packed");
        AssertEqual(expectedCodes, scales.Codes, "absmax codes");
        Assert.Equal(3, scales.Absmax.shape[0]); // 520 scales → blocks of 256, 256 and 8
        AssertEqual(expectedScales, scales.Absmax, "absmax scales");
        AssertEqual(expectedOffset, scales.Offset, "absmax mean");
        using var absmax = scales.Dequantize();
        AssertEqual(expectedAbsmax, absmax, "dequantised absmax");
        using var values = q.Dequantize(ScalarType.Float32);
        AssertEqual(expectedValues, values, "dequantised");
    }

    [Fact]
    public void The_dynamic_map_equals_the_reference_table()
    {
        using var golden = Golden();
        using var expected = golden.Read("dynamic_map");
        using var actual = tensor(DynamicMap8.Levels);
        AssertEqual(expected, actual, "dynamic map");
        Assert.Equal(256, DynamicMap8.Levels.Distinct().Count());
    }

    [Fact]
    public void Nf4_of_a_tensor_larger_than_one_chunk_equals_quantising_it_whole()
    {
        // 1 Mi + 3 blocks + 5 values: two chunks, the second ending in a padded block.
        long n = 64L * 16384 + 64 * 3 + 5;
        using var weight = randn(new[] { n }, generator: new TorchSharp.torch.Generator(5)).to(ScalarType.BFloat16);
        using var q = Nf4Quantizer.Quantize(weight, doubleQuant: false);
        var (blocks, padding) = Nf4Quantizer.Blocked(weight.to(ScalarType.Float32), Nf4Quantizer.BlockSize);
        using var _b = blocks;
        using var absmax = blocks.abs().amax(new long[] { 1 });
        using var expected = Nf4Quantizer.NearestLevel(blocks, absmax, Nf4Quantizer.Levels);
        using var actual = q.Indices();
        Assert.Equal(59, padding);
        AssertEqual(absmax, q.Absmax!, "absmax");
        AssertEqual(expected, actual, "indices");
    }
}

/// <summary>The one-pass CPU quantisers equal the libtorch formulation bit for bit on data larger than one parallel task.</summary>
public class CpuQuantizeKernelTests
{
    static Tensor Weight(ScalarType dtype, long rows, long columns)
    {
        using var values = randn([rows, columns], generator: new Generator(31)) * 0.05;
        // Exact zeros (an all-zero block and row) and a value on an NF4 midpoint of its block's scale.
        values[1].zero_();
        values[2, 0] = tensor(0.5f * (Nf4Quantizer.Levels[9] + Nf4Quantizer.Levels[10]) * 0.2f);
        values[2, 1] = tensor(0.2f);
        return values.to(dtype);
    }

    [Theory]
    [InlineData(ScalarType.Float32, false)]
    [InlineData(ScalarType.BFloat16, false)]
    [InlineData(ScalarType.BFloat16, true)]
    public void Nf4_kernel_equals_the_tensor_code(ScalarType dtype, bool doubleQuant)
    {
        // 300 × 1001: 4692 blocks over several parallel tasks, rows not a multiple of the block, a padded last block
        using var weight = Weight(dtype, 300, 1001);
        Assert.True(CpuQuantizeKernels.Supports(weight));

        using var fast = Nf4Quantizer.Quantize(weight, doubleQuant);
        using var reference = Nf4Quantizer.QuantizeWithTensors(weight, doubleQuant);

        Assert.True(fast.Packed.eq(reference.Packed).all().item<bool>(), "packed codes differ");
        if (doubleQuant)
        {
            Assert.True(fast.QuantizedAbsmax!.Codes.eq(reference.QuantizedAbsmax!.Codes).all().item<bool>());
            Assert.True(fast.QuantizedAbsmax.Absmax.eq(reference.QuantizedAbsmax.Absmax).all().item<bool>());
        }
        else Assert.True(fast.Absmax!.eq(reference.Absmax!).all().item<bool>(), "scales differ");
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void Int8_kernel_equals_the_tensor_code(ScalarType dtype)
    {
        using var weight = Weight(dtype, 300, 2500);
        var (codes, scales) = Int8RowwiseQuantizer.Quantize(weight);
        var (expectedCodes, expectedScales) = Int8RowwiseQuantizer.QuantizeWithTensors(weight);
        using var _ = codes; using var __ = scales; using var ___ = expectedCodes; using var ____ = expectedScales;

        Assert.Equal(expectedCodes.shape, codes.shape);
        Assert.Equal(expectedScales.shape, scales.shape);
        Assert.True(codes.eq(expectedCodes).all().item<bool>(), "codes differ");
        Assert.True(scales.eq(expectedScales).all().item<bool>(), "scales differ");
    }
}
