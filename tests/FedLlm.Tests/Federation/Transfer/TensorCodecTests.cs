using System.Buffers.Binary;
using System.Text.Json;
using FedLlm.Federation.Transfer;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation.Transfer;

public class TensorCodecTests
{
    static readonly TransferEncoding Fp32 = new(), Bf16 = new(TransferPrecision.BFloat16), Fp16 = new(TransferPrecision.Float16);

    static Tensor Normal(long seed, params long[] shape)
    {
        using var generator = new Generator((ulong)seed);
        return randn(shape, generator: generator);
    }

    static float[] Values(Tensor t) => t.contiguous().data<float>().ToArray();

    static uint[] Bits(Tensor t) => Values(t).Select(BitConverter.SingleToUInt32Bits).ToArray();

    [Fact]
    public void Fp32_payload_is_the_little_endian_values_and_round_trips_bit_exactly()
    {
        // Prepare: awkward bits (NaN with payload, −0, subnormal, Inf) that any arithmetic on the way would change.
        uint[] special = [0x7FC01234, 0x80000000, 0x00000001, 0x7F800000, 0x3EAAAAAB];
        using var random = Normal(1, 3, 5, 7);
        var values = special.Select(BitConverter.UInt32BitsToSingle).Concat(Values(random)).ToArray();
        using var input = tensor(values).reshape(10, 11);

        // Execute
        var payload = TensorCodec.Encode(input, Fp32);
        using var decoded = TensorCodec.Decode(payload, Fp32, [10, 11]);

        // Assert
        Assert.Equal(values.Length * 4, payload.Length);
        for (int i = 0; i < values.Length; i++)
            Assert.Equal(BitConverter.SingleToUInt32Bits(values[i]), BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(i * 4)));
        Assert.Equal(new long[] { 10, 11 }, decoded.shape);
        Assert.Equal(ScalarType.Float32, decoded.dtype);
        Assert.Equal(values.Select(BitConverter.SingleToUInt32Bits), Bits(decoded));
    }

    [Fact]
    public void Fp32_reads_a_non_contiguous_view_in_logical_order()
    {
        using var matrix = arange(6, dtype: ScalarType.Float32).reshape(2, 3);
        using var transposed = matrix.t(); // [[0, 3], [1, 4], [2, 5]] without moving memory
        using var decoded = TensorCodec.Decode(TensorCodec.Encode(transposed, Fp32), Fp32, [3, 2]);
        Assert.Equal(new float[] { 0, 3, 1, 4, 2, 5 }, Values(decoded));
    }

    sealed record CastGolden(uint[] fp32_bits, ushort[] bf16_bits, ushort[] fp16_bits);

    static CastGolden LoadCasts() => JsonSerializer.Deserialize<CastGolden>(
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden", "transfer", "casts.json")))!;

    [Theory]
    [InlineData(TransferPrecision.BFloat16)]
    [InlineData(TransferPrecision.Float16)]
    public void Half_precision_payloads_match_pytorchs_casts_bit_for_bit(TransferPrecision precision)
    {
        // Prepare: PyTorch's own cast of ties, near-ties, subnormals and overflow (tests/reference/transfer_casts.py).
        var golden = LoadCasts();
        var expected = precision == TransferPrecision.BFloat16 ? golden.bf16_bits : golden.fp16_bits;
        using var input = tensor(golden.fp32_bits.Select(BitConverter.UInt32BitsToSingle).ToArray());
        var encoding = new TransferEncoding(precision);

        // Execute
        var payload = TensorCodec.Encode(input, encoding);
        using var decoded = TensorCodec.Decode(payload, encoding, [expected.Length]);

        // Assert: the wire bits, then their exact widening back to float32.
        var wire = Enumerable.Range(0, payload.Length / 2).Select(i => BinaryPrimitives.ReadUInt16LittleEndian(payload.AsSpan(2 * i))).ToArray();
        Assert.Equal(expected, wire);
        var widened = expected.Select(h => precision == TransferPrecision.BFloat16
            ? BitConverter.SingleToUInt32Bits(BitConverter.UInt32BitsToSingle((uint)h << 16))
            : BitConverter.SingleToUInt32Bits((float)BitConverter.UInt16BitsToHalf(h)));
        Assert.Equal(widened, Bits(decoded));
    }

    [Fact]
    public void Bf16_tie_rounds_to_even_not_up()
    {
        // 1 + 2^-8 lies exactly between bf16 1.0 and 1 + 2^-7: ties-to-even gives 1.0 (0x3F80), round-half-up 0x3F81.
        using var tie = tensor(new[] { BitConverter.UInt32BitsToSingle(0x3F808000) });
        Assert.Equal(new byte[] { 0x80, 0x3F }, TensorCodec.Encode(tie, Bf16));
    }

    [Theory]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.Float64)]
    public void Any_float_dtype_encodes_and_decodes_to_float32(ScalarType dtype)
    {
        // 0.1 is inexact in every format, so each source dtype gives its own nearest value; fp32 must carry it exactly.
        using var source = tensor(new[] { 0.1, -2.5, 1e-3 }, dtype: dtype);
        using var expected = source.to(ScalarType.Float32);
        using var decoded = TensorCodec.Decode(TensorCodec.Encode(source, Fp32), Fp32, [3]);
        Assert.Equal(Bits(expected), Bits(decoded));
    }

    [Fact]
    public void Int8_matches_a_hand_computed_payload()
    {
        // Prepare: blocks of 2 over [0.5, −1, 0.25, 0.1, −0.3]:
        //   block 0 absmax 1    → codes round(0.5·127) = round(63.5) = 64, −127
        //   block 1 absmax 0.25 → codes 127, round(0.4·127) = round(50.8) = 51
        //   block 2 absmax 0.3 (short) → code −127
        // A per-tensor scale would give codes 64, −127, 32, 13, −38 instead.
        var encoding = new TransferEncoding(TransferPrecision.Int8Blockwise, BlockSize: 2);
        using var input = tensor(new[] { 0.5f, -1f, 0.25f, 0.1f, -0.3f });

        // Execute
        var payload = TensorCodec.Encode(input, encoding);
        using var decoded = TensorCodec.Decode(payload, encoding, [5]);

        // Assert
        Assert.Equal(3 * 4 + 5, payload.Length);
        var scales = Enumerable.Range(0, 3).Select(i => BinaryPrimitives.ReadSingleLittleEndian(payload.AsSpan(4 * i))).ToArray();
        Assert.Equal(new[] { 1f, 0.25f, 0.3f }, scales);
        Assert.Equal(new sbyte[] { 64, -127, 127, 51, -127 }, payload[12..].Select(b => (sbyte)b).ToArray());
        var expected = new[] { 64 / 127.0, -1, 0.25, 51 * 0.25 / 127, -0.3 };
        var actual = Values(decoded);
        for (int i = 0; i < 5; i++) Assert.Equal(expected[i], actual[i], 1e-6);
    }

    [Fact]
    public void Int8_block_larger_than_the_tensor_is_one_short_block_not_a_padded_one()
    {
        // A hostile header may claim any block size; a padded block of 2^31 floats would take 8 GB.
        var encoding = new TransferEncoding(TransferPrecision.Int8Blockwise, BlockSize: int.MaxValue);
        using var input = tensor(new[] { 0.5f, -2f, 1f });
        var payload = TensorCodec.Encode(input, encoding);
        using var decoded = TensorCodec.Decode(payload, encoding, [3]);
        Assert.Equal(4 + 3, payload.Length);
        Assert.Equal(2f, BinaryPrimitives.ReadSingleLittleEndian(payload));
        Assert.Equal(new sbyte[] { 32, -127, 64 }, payload[4..].Select(b => (sbyte)b).ToArray()); // round(31.75), −127, round(63.5)
        Assert.Equal(new[] { 32 * 2 / 127f, -2f, 64 * 2 / 127f }, Values(decoded), (a, b) => Math.Abs(a - b) < 1e-6);
    }

    [Fact]
    public void Int8_error_is_at_most_a_254th_of_the_block_absmax()
    {
        // Prepare: blocks whose magnitudes differ by 10^4, so one shared scale would break the bound for the small ones.
        const int block = 64;
        using var raw = Normal(7, 10, block);
        using var magnitudes = pow(10.0, linspace(-4, 0, 10)).unsqueeze(1);
        using var input = (raw * magnitudes).reshape(-1)[..^5]; // 635 elements: the last block is short
        var encoding = new TransferEncoding(TransferPrecision.Int8Blockwise, BlockSize: block);

        // Execute
        using var decoded = TensorCodec.Decode(TensorCodec.Encode(input, encoding), encoding, [635]);

        // Assert
        var x = Values(input);
        var y = Values(decoded);
        for (int b = 0; b * block < x.Length; b++)
        {
            var range = x.Skip(b * block).Take(block).ToArray();
            double bound = range.Max(Math.Abs) / 254.0 * (1 + 1e-5); // float32 rounding of x/absmax·127 and of the product
            for (int i = 0; i < range.Length; i++)
                Assert.True(Math.Abs(range[i] - y[b * block + i]) <= bound, $"element {b * block + i}: {range[i]} decoded as {y[b * block + i]}, bound {bound}");
        }
    }

    [Fact]
    public void Int8_all_zero_block_decodes_to_zeros_and_a_non_finite_block_stays_non_finite()
    {
        var encoding = new TransferEncoding(TransferPrecision.Int8Blockwise, BlockSize: 2);
        using var input = tensor(new[] { 0f, 0f, 1f, float.PositiveInfinity, 0.5f, float.NaN });
        using var decoded = TensorCodec.Decode(TensorCodec.Encode(input, encoding), encoding, [6]);
        var y = Values(decoded);
        Assert.Equal(new[] { 0f, 0f }, y[..2]);
        Assert.All(y[2..], v => Assert.False(float.IsFinite(v), $"{v} should be non-finite so the validator rejects it"));
    }

    [Fact]
    public void Gzip_shrinks_a_compressible_tensor_and_round_trips()
    {
        // Prepare: a LoRA B matrix early in training is mostly exact zeros.
        using var sparse = zeros(256, 64);
        sparse[0] = Normal(3, 64);
        var plain = TensorCodec.Encode(sparse, Fp32);
        var gzip = TransferEncoding.Parse("fp32+gzip");

        // Execute
        var compressed = TensorCodec.Encode(sparse, gzip);
        using var decoded = TensorCodec.Decode(compressed, gzip, [256, 64]);

        // Assert
        Assert.True(compressed.Length * 10 < plain.Length, $"gzip gave {compressed.Length} bytes for {plain.Length}");
        Assert.Equal(Bits(sparse), Bits(decoded));
    }

    [Fact]
    public void A_short_or_long_payload_is_refused_with_both_lengths()
    {
        using var input = ones(2, 3);
        var payload = TensorCodec.Encode(input, Fp16);
        var shortError = Assert.Throws<InvalidDataException>(() => TensorCodec.Decode(payload.AsSpan(0, 11), Fp16, [2, 3]));
        Assert.Contains("11 bytes", shortError.Message);
        Assert.Contains("needs exactly 12", shortError.Message);
        Assert.Contains("[2, 3]", shortError.Message);
        var longError = Assert.Throws<InvalidDataException>(() => TensorCodec.Decode(payload, Fp16, [2, 2]));
        Assert.Contains("needs exactly 8", longError.Message);
    }

    [Fact]
    public void Corrupt_or_mismatched_gzip_is_refused_with_a_reason()
    {
        var gzip = TransferEncoding.Parse("bf16+gzip");
        using var input = ones(100);
        var payload = TensorCodec.Encode(input, gzip);

        var garbage = (byte[])payload.Clone();
        for (int i = 10; i < garbage.Length - 8; i++) garbage[i] ^= 0x5A; // keep the gzip header, ruin the deflate stream
        var corrupt = Assert.Throws<InvalidDataException>(() => TensorCodec.Decode(garbage, gzip, [100]));
        Assert.Contains("corrupt", corrupt.Message);

        var truncated = Assert.Throws<InvalidDataException>(() => TensorCodec.Decode(payload.AsSpan(0, payload.Length / 2), gzip, [100]));
        Assert.Contains("gzip payload", truncated.Message);

        var tooMuch = Assert.Throws<InvalidDataException>(() => TensorCodec.Decode(payload, gzip, [50]));
        Assert.Contains("more than the 100 bytes", tooMuch.Message);

        var tooLittle = Assert.Throws<InvalidDataException>(() => TensorCodec.Decode(payload, gzip, [200]));
        Assert.Contains("only 200 bytes, 400 needed", tooLittle.Message);
    }

    [Fact]
    public void Empty_tensors_travel_as_empty_payloads()
    {
        using var empty = zeros(0, 8);
        var payload = TensorCodec.Encode(empty, Fp32);
        Assert.Empty(payload);
        using var decoded = TensorCodec.Decode(payload, Fp32, [0, 8]);
        Assert.Equal(new long[] { 0, 8 }, decoded.shape);
    }

    [Fact]
    public void Integer_tensors_are_refused()
    {
        using var ids = tensor(new long[] { 1, 2 });
        var error = Assert.Throws<ArgumentException>(() => TensorCodec.Encode(ids, Fp32));
        Assert.Contains("Int64", error.Message);
    }

    [Theory]
    [InlineData("fp32", TransferPrecision.Float32, false, 4096, "fp32")]
    [InlineData("BF16+gzip", TransferPrecision.BFloat16, true, 4096, "bf16+gzip")]
    [InlineData(" float16 ", TransferPrecision.Float16, false, 4096, "fp16")]
    [InlineData("int8", TransferPrecision.Int8Blockwise, false, 4096, "int8")]
    [InlineData("int8:256+gzip", TransferPrecision.Int8Blockwise, true, 256, "int8:256+gzip")]
    public void Parse_reads_config_strings_and_ToString_writes_them_back(string text, TransferPrecision precision, bool gzip, int block, string canonical)
    {
        var encoding = TransferEncoding.Parse(text);
        Assert.Equal(new TransferEncoding(precision, gzip, block), encoding);
        Assert.Equal(canonical, encoding.ToString());
        Assert.Equal(encoding, TransferEncoding.Parse(encoding.ToString()));
    }

    [Theory]
    [InlineData("fp8", "unknown precision 'fp8'")]
    [InlineData("fp32+zstd", "'+zstd'")]
    [InlineData("bf16:64", "only to int8")]
    [InlineData("int8:0", "block size '0'")]
    [InlineData("fp16+gzip+gzip", "repeated")]
    public void Parse_refuses_unknown_text_naming_the_part(string text, string expected)
    {
        var error = Assert.Throws<FormatException>(() => TransferEncoding.Parse(text));
        Assert.Contains(expected, error.Message);
        Assert.Contains(text, error.Message);
    }
}
