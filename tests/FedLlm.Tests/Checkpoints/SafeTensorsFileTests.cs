using FedLlm.Checkpoints;
using Xunit;
using static FedLlm.Tests.Checkpoints.CheckpointTestSupport;
using static TorchSharp.torch;

namespace FedLlm.Tests.Checkpoints;

public sealed class SafeTensorsFileTests : IDisposable
{
    readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Read_HandBuiltFile_GivesTheNumbersWritten()
    {
        // Prepare: bytes laid out by hand from the format description, so the reader cannot merely agree with our writer.
        var header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}       "; // 57 + 7 = 64 bytes
        var path = _dir.File("hand.safetensors");
        File.WriteAllBytes(path, HandBuilt(header, Float32Bytes(1f, 2f, 3f, -4.5f)));

        // Execute
        using var file = SafeTensorsFile.Open(path);
        using var w = file.Read("w");

        // Assert
        var info = file.Tensors["w"];
        Assert.Equal(SafeTensorsDtype.F32, info.Dtype);
        Assert.Equal(new long[] { 2, 2 }, info.Shape);
        Assert.Equal(8 + 64, info.Offset);
        Assert.Equal(64, header.Length);
        Assert.Equal(16, info.ByteLength);
        Assert.Equal(new long[] { 2, 2 }, w.shape);
        Assert.Equal(ScalarType.Float32, w.dtype);
        Assert.Equal(new[] { 1f, 2f, 3f, -4.5f }, w.data<float>().ToArray());
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void Read_HuggingFaceTestVectors_UnpaddedHeaderAndMetadata()
    {
        // Prepare: the byte strings of huggingface/safetensors bindings/python/tests/test_simple.py (older versions did
        // not pad the header; the metadata vector's 102-byte header is not a multiple of 8). Readers must accept both.
        var i32 = new byte[16];
        i32[12] = 1; // data[1, 1] = 1
        var unpadded = _dir.File("unpadded.safetensors");
        File.WriteAllBytes(unpadded, HandBuilt("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", i32));
        var withMetadata = _dir.File("metadata.safetensors");
        File.WriteAllBytes(withMetadata, HandBuilt(
            "{\"__metadata__\":{\"framework\":\"pt\"},\"test1\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}       ",
            i32));

        // Execute
        using var a = SafeTensorsFile.Open(unpadded);
        using var b = SafeTensorsFile.Open(withMetadata);
        using var ta = a.Read("test");
        using var tb = b.Read("test1");

        // Assert
        Assert.Equal(new[] { 0, 0, 0, 1 }, ta.data<int>().ToArray());
        Assert.Equal(new[] { 0, 0, 0, 1 }, tb.data<int>().ToArray());
        Assert.Equal("pt", b.Metadata["framework"]);
        Assert.Single(b.Tensors);
    }

    [Fact]
    public void Open_OffsetsInOtherOrderThanHeader_AreAccepted()
    {
        // The header lists "b" first but its data comes second: only data_offsets decide where a tensor is.
        var header = "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
        var path = _dir.File("order.safetensors");
        File.WriteAllBytes(path, HandBuilt(header, Float32Bytes(10f, 20f)));

        using var file = SafeTensorsFile.Open(path);
        using var a = file.Read("a");
        using var b = file.Read("b");

        Assert.Equal(10f, a.item<float>());
        Assert.Equal(20f, b.item<float>());
        Assert.Equal(new[] { "b", "a" }, file.Tensors.Keys);
    }

    [Fact]
    public void Read_ScalarAndZeroElementTensors()
    {
        var header = "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},\"e\":{\"dtype\":\"BF16\",\"shape\":[0,3],\"data_offsets\":[4,4]}}";
        var path = _dir.File("scalar.safetensors");
        File.WriteAllBytes(path, HandBuilt(header, Float32Bytes(3.5f)));

        using var file = SafeTensorsFile.Open(path);
        using var s = file.Read("s");
        using var e = file.Read("e");
        using var e32 = file.Read("e", ScalarType.Float32);

        Assert.Empty(s.shape);
        Assert.Equal(3.5f, s.item<float>());
        Assert.Equal(new long[] { 0, 3 }, e.shape);
        Assert.Equal(ScalarType.BFloat16, e.dtype);
        Assert.Equal(ScalarType.Float32, e32.dtype);
    }

    [Fact]
    public void Open_TruncatedFile_NamesFileAndFirstTensorPastTheEnd()
    {
        // Prepare: a, b, c of 64 bytes each; cut the file in the middle of b, so b and c both lie past the end.
        var path = _dir.File("cut.safetensors");
        using (var a = zeros(16))
        using (var b = ones(16))
        using (var c = ones(16))
        {
            SafeTensorsWriter.Write(path, [new("a", a), new("b", b), new("c", c)]);
        }
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^100]);

        // Execute
        var error = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));

        // Assert
        Assert.Contains(path, error.Message);
        Assert.Contains("truncated", error.Message);
        Assert.Contains("'b'", error.Message);
        Assert.DoesNotContain("'c'", error.Message);
    }

    [Fact]
    public void Open_HeaderLongerThanFile_IsReportedAsTruncated()
    {
        var path = _dir.File("short.safetensors");
        var bytes = HandBuilt("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", Float32Bytes(1f));
        File.WriteAllBytes(path, bytes[..20]);

        var error = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));

        Assert.Contains(path, error.Message);
        Assert.Contains("truncated", error.Message);
    }

    [Fact]
    public void Open_CorruptJson_NamesFile()
    {
        var path = _dir.File("json.safetensors");
        File.WriteAllBytes(path, HandBuilt("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", Float32Bytes(1f)));

        var error = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));

        Assert.Contains(path, error.Message);
        Assert.Contains("not valid JSON", error.Message);
    }

    [Fact]
    public void Open_ByteLengthNotMatchingShape_NamesTensorAndSizes()
    {
        // [2, 2] F32 needs 16 bytes; the offsets give it 12 (and the file has exactly 12, so only the size check can fire).
        var path = _dir.File("length.safetensors");
        File.WriteAllBytes(path, HandBuilt("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", Float32Bytes(1f, 2f, 3f)));

        var error = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));

        Assert.Contains(path, error.Message);
        Assert.Contains("'w'", error.Message);
        Assert.Contains("16 bytes", error.Message);
        Assert.Contains("span 12", error.Message);
    }

    [Theory]
    [InlineData("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", "F8_E4M3")]
    [InlineData("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "\"f32\"")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "not a non-negative integer")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", "data_offsets")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", "end before they begin")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "twice")]
    [InlineData("{\"__metadata__\":{\"n\":1},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "only strings")]
    [InlineData("[1,2]", "not an object")]
    public void Open_InvalidHeader_IsRejectedWithReason(string header, string reason)
    {
        var path = _dir.File("bad.safetensors");
        File.WriteAllBytes(path, HandBuilt(header, Float32Bytes(1f)));

        var error = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));

        Assert.Contains(path, error.Message);
        Assert.Contains(reason, error.Message);
    }

    [Theory]
    [InlineData("[0,8]", "[4,8]", "overlaps")]
    [InlineData("[0,4]", "[8,12]", "no gaps")]
    public void Open_OverlapOrGapBetweenTensors_IsRejected(string a, string b, string reason)
    {
        var header = $"{{\"a\":{{\"dtype\":\"F32\",\"shape\":[{(a == "[0,8]" ? 2 : 1)}],\"data_offsets\":{a}}},\"b\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{b}}}}}";
        var path = _dir.File("layout.safetensors");
        File.WriteAllBytes(path, HandBuilt(header, Float32Bytes(1f, 2f, 3f)));

        var error = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));

        Assert.Contains(reason, error.Message);
        Assert.Contains("'b'", error.Message);
    }

    [Fact]
    public void Open_BytesAfterLastTensor_AreRejected()
    {
        var path = _dir.File("trailing.safetensors");
        File.WriteAllBytes(path, HandBuilt("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", Float32Bytes(1f, 2f)));

        var error = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));

        Assert.Contains("last 4 bytes belong to no tensor", error.Message);
    }

    [Fact]
    public void Open_MissingFile_NamesIt()
    {
        var path = _dir.File("nope.safetensors");

        var error = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));

        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void Read_MissingTensor_NamesFileTensorAndPrefixedCandidate()
    {
        var path = _dir.File("names.safetensors");
        using (var w = ones(2))
        {
            SafeTensorsWriter.Write(path, [new("model.layers.0.mlp.up_proj.weight", w)]);
        }
        using var file = SafeTensorsFile.Open(path);

        var error = Assert.Throws<CheckpointException>(() => file.Read("layers.0.mlp.up_proj.weight"));

        Assert.Contains(path, error.Message);
        Assert.Contains("'layers.0.mlp.up_proj.weight'", error.Message);
        Assert.Contains("similar names: 'model.layers.0.mlp.up_proj.weight'", error.Message);
    }

    [Fact]
    public void ReadInto_ShapeMismatch_NamesFileTensorAndBothShapes()
    {
        var path = _dir.File("shape.safetensors");
        using (var w = ones(2, 3))
        {
            SafeTensorsWriter.Write(path, [new("w", w)]);
        }
        using var file = SafeTensorsFile.Open(path);
        using var destination = zeros(3, 2);

        var error = Assert.Throws<CheckpointException>(() => file.ReadInto("w", destination));

        Assert.Contains(path, error.Message);
        Assert.Contains("'w'", error.Message);
        Assert.Contains("[2, 3]", error.Message);
        Assert.Contains("[3, 2]", error.Message);
        Assert.Equal(0f, destination.sum().item<float>()); // untouched
    }

    [Fact]
    public void ReadInto_NonContiguousDestination_IsRefused()
    {
        var path = _dir.File("layout.safetensors");
        using (var w = ones(2, 2))
        {
            SafeTensorsWriter.Write(path, [new("w", w)]);
        }
        using var file = SafeTensorsFile.Open(path);
        using var storage = zeros(2, 2);
        using var transposed = storage.t();

        var error = Assert.Throws<ArgumentException>(() => file.ReadInto("w", transposed));

        Assert.Contains("non-contiguous", error.Message);
    }

    [Theory]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void ReadInto_HalfOnDiskIntoFloat32_EqualsTorchConversion_AcrossManyChunks(ScalarType diskType)
    {
        // Prepare: 1000 elements with 64-byte chunks: 32 elements per chunk, 31 full chunks and a remainder of 8.
        var path = _dir.File("half.safetensors");
        using var original = RandomFloats([10, 100], seed: 7, diskType);
        SafeTensorsWriter.Write(path, [new("w", original)]);
        using var expected = original.to_type(ScalarType.Float32, copy: true);

        // Execute
        using var file = SafeTensorsFile.Open(path, chunkBytes: 64);
        using var destination = full(new long[] { 10, 100 }, float.NaN);
        file.ReadInto("w", destination);

        // Assert: bit-exact against torch's own conversion, and not trivially (the values are not all equal).
        Assert.Equal(RawBytes(expected), RawBytes(destination));
        Assert.True(destination.std().item<float>() > 0);
    }

    [Fact]
    public void ReadInto_Bf16IntoFloat32_LargerThanDefaultChunk()
    {
        // 5M BF16 elements = 10 MB on disk, more than the default 8 MiB chunk, so the production chunk size is crossed too.
        var path = _dir.File("big.safetensors");
        using var original = RandomFloats([5_000_000], seed: 11, ScalarType.BFloat16);
        SafeTensorsWriter.Write(path, [new("w", original)]);
        using var expected = original.to_type(ScalarType.Float32, copy: true);

        using var file = SafeTensorsFile.Open(path);
        using var destination = empty(5_000_000);
        file.ReadInto("w", destination);

        Assert.Equal(RawBytes(expected), RawBytes(destination));
    }

    [Fact]
    public void ReadInto_SameDtype_AcrossManyChunks_IsBitExact()
    {
        var path = _dir.File("direct.safetensors");
        using var original = RandomBits(ScalarType.Float32, [7, 13], seed: 3); // 364 bytes, chunks of 40 bytes
        SafeTensorsWriter.Write(path, [new("w", original)]);

        using var file = SafeTensorsFile.Open(path, chunkBytes: 40);
        using var destination = zeros(7, 13);
        file.ReadInto("w", destination);

        Assert.Equal(RawBytes(original), RawBytes(destination));
    }

    [Fact]
    public void ReadInto_ParameterThatRequiresGrad_IsFilledInPlace()
    {
        // Loading base weights into nn parameters: the in-place copy must not trip autograd's leaf check.
        var path = _dir.File("param.safetensors");
        using var original = RandomFloats([3, 4], seed: 5, ScalarType.BFloat16);
        SafeTensorsWriter.Write(path, [new("w", original)]);
        using var expected = original.to_type(ScalarType.Float32, copy: true);
        using var file = SafeTensorsFile.Open(path);
        using var parameter = zeros(3, 4);
        parameter.requires_grad = true;

        file.ReadInto("w", parameter);

        Assert.True(parameter.requires_grad);
        using var detached = parameter.detach();
        Assert.Equal(RawBytes(expected), RawBytes(detached));
    }

    [Fact]
    public void Read_WithDtype_Converts()
    {
        var path = _dir.File("convert.safetensors");
        using (var w = tensor(new[] { 1.5f, -2f, 3.25f }))
        {
            SafeTensorsWriter.Write(path, [new("w", w)]);
        }
        using var file = SafeTensorsFile.Open(path);

        using var f64 = file.Read("w", ScalarType.Float64);

        Assert.Equal(ScalarType.Float64, f64.dtype);
        Assert.Equal(new[] { 1.5, -2.0, 3.25 }, f64.data<double>().ToArray());
    }

    [Fact]
    public void Read_AfterDispose_Throws()
    {
        var path = _dir.File("disposed.safetensors");
        using (var w = ones(1))
        {
            SafeTensorsWriter.Write(path, [new("w", w)]);
        }
        var file = SafeTensorsFile.Open(path);
        file.Dispose();

        Assert.Throws<ObjectDisposedException>(() => file.Read("w"));
    }

    [Fact]
    public void Open_NonUtf8Header_IsRejected()
    {
        var path = _dir.File("utf8.safetensors");
        var bytes = HandBuilt("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", Float32Bytes(1f));
        bytes[10] = 0xFF; // inside the name "w"'s quotes
        File.WriteAllBytes(path, bytes);

        var error = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));

        Assert.Contains(path, error.Message);
        Assert.Contains("not valid UTF-8", error.Message);
    }
}
