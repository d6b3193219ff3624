using FedLlm.Checkpoints;
using Xunit;
using static FedLlm.Tests.Checkpoints.CheckpointTestSupport;
using static TorchSharp.torch;

namespace FedLlm.Tests.Checkpoints;

/// <summary>
/// The load path of model weights: SafeTensorsFile.MapFinite (the file's own pages, checked by positional reads) and
/// ReadFiniteInto (read, converted and checked in one pass, on several threads for BF16 to F32). Chunks of a few bytes
/// here, so every tensor spans many chunks and a value can sit on any chunk's edge.
/// </summary>
public sealed class MapFiniteTests : IDisposable
{
    const int TinyChunk = 40; // bytes: 10 F32 or 20 BF16 elements, so 1003 elements make ~50-100 chunks
    readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    string Saved(Tensor values)
    {
        var path = _dir.File("w.safetensors");
        SafeTensorsWriter.Write(path, [new("w", values)]);
        return path;
    }

    [Theory]
    [InlineData(ScalarType.BFloat16, ScalarType.Float32)] // widened here, in parallel
    [InlineData(ScalarType.Float32, ScalarType.BFloat16)] // rounded by libtorch (round to nearest even)
    [InlineData(ScalarType.Float16, ScalarType.Float32)]
    [InlineData(ScalarType.Float32, ScalarType.Float16)]
    [InlineData(ScalarType.Float32, ScalarType.Float32)]  // read straight into the destination, and mapped
    [InlineData(ScalarType.BFloat16, ScalarType.BFloat16)]
    public void Converts_bit_for_bit_as_libtorch_does_across_many_chunks(ScalarType stored, ScalarType target)
    {
        // Prepare: spread exponents and signs, with −0, the smallest subnormals and values that round on a tie.
        using var values = RandomFloats([17, 59], seed: 3, dtype: stored);
        using (no_grad())
        {
            using var flat = values.view(-1);
            flat[0] = tensor(-0.0f).to(stored);
            flat[1] = tensor(stored == ScalarType.Float16 ? 6e-8f : 1e-40f).to(stored);
            flat[1002] = tensor(1.00390625f).to(stored); // 1 + 2^-8: a tie between two bfloat16 values
        }
        using var file = SafeTensorsFile.Open(Saved(values), TinyChunk);

        // Execute
        using var loaded = empty([17, 59], target);
        file.ReadFiniteInto("w", loaded);
        using var mapped = stored == target ? file.MapFinite("w") : null;

        // Assert
        using var expected = values.to(target);
        Assert.Equal(RawBytes(expected), RawBytes(loaded));
        if (mapped is not null) Assert.Equal(RawBytes(expected), RawBytes(mapped));
    }

    [Theory]
    [InlineData(ScalarType.Float32, 0, float.NaN)]
    [InlineData(ScalarType.Float32, 509, float.PositiveInfinity)]
    [InlineData(ScalarType.BFloat16, 1002, float.NegativeInfinity)]
    [InlineData(ScalarType.BFloat16, 19, float.NaN)]
    public void A_non_finite_element_in_any_chunk_is_refused_with_the_file_tensor_and_count(ScalarType target, int position, float bad)
    {
        // Prepare: a BF16 file, read into both types (converted and mapped), with two bad values.
        using var values = RandomFloats([1003], seed: 5, dtype: ScalarType.BFloat16);
        using (no_grad())
        {
            values[position] = tensor(bad).to(ScalarType.BFloat16);
            values[(position + 500) % 1003] = tensor(float.NaN).to(ScalarType.BFloat16);
        }
        var path = Saved(values);
        using var file = SafeTensorsFile.Open(path, TinyChunk);

        // Execute
        using var destination = empty([1003], target);
        var error = target == ScalarType.BFloat16
            ? Assert.Throws<NonFiniteTensorException>(() => file.MapFinite("w"))
            : Assert.Throws<NonFiniteTensorException>(() => file.ReadFiniteInto("w", destination));

        // Assert
        Assert.Equal(path, error.File);
        Assert.Equal("w", error.Tensor);
        Assert.Contains("holds 2 non-finite value(s)", error.Message);
    }

    [Fact]
    public void A_float32_too_large_for_bfloat16_is_refused_because_it_converts_to_infinity()
    {
        using var values = tensor(new[] { 1f, float.MaxValue, -2f });
        using var file = SafeTensorsFile.Open(Saved(values), TinyChunk);

        using var asFloat32 = file.MapFinite("w");
        using var asBFloat16 = empty([3], ScalarType.BFloat16);
        var error = Assert.Throws<NonFiniteTensorException>(() => file.ReadFiniteInto("w", asBFloat16));

        Assert.NotNull(asFloat32);
        Assert.Contains("holds 1 non-finite value(s)", error.Message);
    }

    [Fact]
    public void A_tensor_that_cannot_be_mapped_is_not_mapped_but_reads_with_its_values()
    {
        // Prepare: a 61-byte header puts the F32 data at byte 69, where no float view of the file can start.
        var path = _dir.File("unaligned.safetensors");
        File.WriteAllBytes(path, HandBuilt("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}    ",
            Float32Bytes(1f, -2f, 3.5f, 0f)));
        using var file = SafeTensorsFile.Open(path, TinyChunk);
        using var notMapped = file.Map("w");

        // Execute
        using var mapped = file.MapFinite("w");
        using var loaded = empty([2, 2]);
        file.ReadFiniteInto("w", loaded);

        // Assert
        Assert.Null(notMapped);
        Assert.Null(mapped);
        Assert.Equal(new[] { 1f, -2f, 3.5f, 0f }, loaded.data<float>().ToArray());
    }
}
