using System.Text;
using FedLlm.Checkpoints;
using Xunit;
using static FedLlm.Tests.Checkpoints.CheckpointTestSupport;
using static TorchSharp.torch;

namespace FedLlm.Tests.Checkpoints;

public sealed class SafeTensorsWriterTests : IDisposable
{
    readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Write_MatchesReferenceImplementationBytes()
    {
        // Prepare: the expected bytes are those huggingface/safetensors' own test pins for save({"test": int32 zeros(2, 2)
        // with [1, 1] = 1}) (bindings/python/tests/test_simple.py): '@' = 64-byte header, padded with 4 spaces.
        var path = _dir.File("reference.safetensors");
        var data = new byte[16];
        data[12] = 1;
        var expected = HandBuilt("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}    ", data);
        using var test = tensor(new[] { 0, 0, 0, 1 }, [2, 2]);

        // Execute
        SafeTensorsWriter.Write(path, [new("test", test)]);

        // Assert
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    public static TheoryData<ScalarType> AllDtypes() =>
    [
        ScalarType.Float64, ScalarType.Float32, ScalarType.Float16, ScalarType.BFloat16, ScalarType.Int64,
        ScalarType.Int32, ScalarType.Int16, ScalarType.Int8, ScalarType.Byte, ScalarType.Bool,
    ];

    [Theory]
    [MemberData(nameof(AllDtypes))]
    public void RoundTrip_EveryDtype_IsBitExact(ScalarType dtype)
    {
        // Random bits, NaN payloads included for float types: any conversion on the way would change some byte.
        var path = _dir.File("roundtrip.safetensors");
        using var matrix = RandomBits(dtype, [5, 7], seed: (int)dtype);
        using var scalar = RandomBits(dtype, [], seed: 100 + (int)dtype);
        using var none = empty([0, 4], dtype, CPU);

        SafeTensorsWriter.Write(path, [new("matrix", matrix), new("scalar", scalar), new("none", none)]);
        using var file = SafeTensorsFile.Open(path);
        using var matrixBack = file.Read("matrix");
        using var scalarBack = file.Read("scalar");
        using var noneBack = file.Read("none");

        var expectedDtype = SafeTensorsDtypes.FromScalarType(dtype);
        Assert.Equal(expectedDtype, file.Tensors["matrix"].Dtype);
        Assert.Equal(dtype, matrixBack.dtype);
        Assert.Equal(new long[] { 5, 7 }, matrixBack.shape);
        Assert.Equal(RawBytes(matrix), RawBytes(matrixBack));
        Assert.Empty(scalarBack.shape);
        Assert.Equal(RawBytes(scalar), RawBytes(scalarBack));
        Assert.Equal(new long[] { 0, 4 }, noneBack.shape);
        Assert.Equal(dtype, noneBack.dtype);
    }

    [Fact]
    public void RoundTrip_Metadata_IsKeptAndSorted()
    {
        var path = _dir.File("metadata.safetensors");
        using var w = ones(1);
        var metadata = new Dictionary<string, string> { ["z"] = "last", ["format"] = "pt", ["quote\"d"] = "line\nbreak é" };

        SafeTensorsWriter.Write(path, [new("w", w)], metadata);
        using var file = SafeTensorsFile.Open(path);

        Assert.Equal(metadata, file.Metadata);
        var bytes = File.ReadAllBytes(path);
        var header = Encoding.UTF8.GetString(bytes, 8, (int)BitConverter.ToInt64(bytes, 0));
        Assert.StartsWith("{\"__metadata__\":{\"format\":\"pt\",\"quote\\\"d\":\"line\\nbreak é\",\"z\"", header);
    }

    [Fact]
    public void Write_SameInputTwice_GivesSameBytes_AndHeaderPaddedToEight()
    {
        using var a = RandomBits(ScalarType.BFloat16, [3, 3], seed: 1);
        using var b = RandomBits(ScalarType.Float32, [2], seed: 2);
        var first = _dir.File("first.safetensors");
        var second = _dir.File("second.safetensors");

        SafeTensorsWriter.Write(first, [new("a", a), new("b", b)]);
        SafeTensorsWriter.Write(second, [new("a", a), new("b", b)]);

        var bytes = File.ReadAllBytes(first);
        Assert.Equal(bytes, File.ReadAllBytes(second));
        Assert.Equal(0, BitConverter.ToInt64(bytes, 0) % 8);
    }

    [Fact]
    public void Write_MixedDtypes_AlignsEveryTensorButKeepsHeaderOrder()
    {
        // Prepare: 3 bytes of U8 first would put the F32 at offset 3 if data followed the given order.
        var path = _dir.File("aligned.safetensors");
        using var flags = ones([3], ScalarType.Byte);
        using var half = ones([3], ScalarType.Float16);
        using var weights = ones([2], ScalarType.Float32);

        SafeTensorsWriter.Write(path, [new("flags", flags), new("half", half), new("weights", weights)]);
        using var file = SafeTensorsFile.Open(path);

        // Assert: header order as given; data by descending element size, each offset a multiple of its element size.
        Assert.Equal(new[] { "flags", "half", "weights" }, file.Tensors.Keys);
        long dataStart = file.Tensors.Values.Min(t => t.Offset);
        Assert.Equal(0, file.Tensors["weights"].Offset - dataStart);
        Assert.Equal(8, file.Tensors["half"].Offset - dataStart);
        Assert.Equal(14, file.Tensors["flags"].Offset - dataStart);
    }

    [Fact]
    public void Write_NonContiguousTensor_StoresItsLogicalOrder_InRowChunks()
    {
        // A transposed view written in 16-byte chunks (one 4-element row of the transpose at a time).
        var path = _dir.File("transposed.safetensors");
        using var storage = RandomFloats([4, 6], seed: 9);
        using var transposed = storage.t(); // (6, 4), not contiguous
        using var expected = transposed.contiguous();

        SafeTensorsWriter.Write(path, [new("t", transposed)], metadata: null, chunkBytes: 16);
        using var file = SafeTensorsFile.Open(path);
        using var back = file.Read("t");

        Assert.False(transposed.is_contiguous());
        Assert.Equal(new long[] { 6, 4 }, back.shape);
        Assert.Equal(RawBytes(expected), RawBytes(back));
    }

    [Fact]
    public void Write_ContiguousTensorInSmallChunks_IsBitExact()
    {
        var path = _dir.File("chunks.safetensors");
        using var original = RandomBits(ScalarType.Int16, [101], seed: 4); // 202 bytes in 10-byte chunks

        SafeTensorsWriter.Write(path, [new("w", original)], metadata: null, chunkBytes: 10);
        using var file = SafeTensorsFile.Open(path);
        using var back = file.Read("w");

        Assert.Equal(RawBytes(original), RawBytes(back));
    }

    [Fact]
    public void Write_ParametersThatRequireGrad_ContiguousAndTransposed()
    {
        // Saving LoRA parameters: they require grad, and a transposed view of one takes the row-chunk path.
        var path = _dir.File("params.safetensors");
        using var values = RandomFloats([3, 5], seed: 12);
        using var parameter = values.clone();
        parameter.requires_grad = true;
        using var transposed = parameter.t();
        using var valuesTransposed = values.t();
        using var expectedTransposed = valuesTransposed.contiguous();

        SafeTensorsWriter.Write(path, [new("p", parameter), new("pt", transposed)], metadata: null, chunkBytes: 8);
        using var file = SafeTensorsFile.Open(path);
        using var p = file.Read("p");
        using var pt = file.Read("pt");

        Assert.Equal(RawBytes(values), RawBytes(p));
        Assert.Equal(RawBytes(expectedTransposed), RawBytes(pt));
    }

    [Fact]
    public void Write_OverExistingFile_ReplacesIt_AndLeavesNoTemporaryFile()
    {
        var path = _dir.File("model.safetensors");
        using var first = ones(4);
        using var second = full([2], 7f);

        SafeTensorsWriter.Write(path, [new("a", first)]);
        SafeTensorsWriter.Write(path, [new("b", second)]);
        using var file = SafeTensorsFile.Open(path);

        Assert.Equal(new[] { "b" }, file.Tensors.Keys);
        Assert.Equal(new[] { "model.safetensors" }, Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Write_InvalidInput_LeavesExistingFileUntouched()
    {
        var path = _dir.File("model.safetensors");
        using var good = ones(4);
        SafeTensorsWriter.Write(path, [new("a", good)]);
        var before = File.ReadAllBytes(path);
        using var complex = zeros([2], ScalarType.ComplexFloat32);

        var unsupported = Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new("a", good), new("c", complex)]));
        var duplicate = Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new("a", good), new("a", good)]));
        var reserved = Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new("__metadata__", good)]));

        Assert.Contains("'c'", unsupported.Message);
        Assert.Contains("'a'", duplicate.Message);
        Assert.Contains("reserved", reserved.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(_dir.Path));
    }
}
