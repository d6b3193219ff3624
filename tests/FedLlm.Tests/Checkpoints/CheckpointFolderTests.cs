using System.Text.Json;
using FedLlm.Checkpoints;
using Xunit;
using static FedLlm.Tests.Checkpoints.CheckpointTestSupport;
using static TorchSharp.torch;

namespace FedLlm.Tests.Checkpoints;

public sealed class CheckpointFolderTests : IDisposable
{
    readonly TempDirectory _dir = new();
    readonly List<Tensor> _tensors = [];

    public void Dispose()
    {
        foreach (var t in _tensors)
        {
            t.Dispose();
        }
        _dir.Dispose();
    }

    /// <summary>
    /// huggingface_hub's test_multiple_shards state dict: tensors of 6, 10, 30, 2 and 2 bytes (U8 here), in this order.
    /// </summary>
    List<KeyValuePair<string, Tensor>> HubTestStateDict()
    {
        var sizes = new[] { 6, 10, 30, 2, 2 };
        return sizes.Select((size, i) => new KeyValuePair<string, Tensor>($"layer_{i + 1}", Track(RandomBits(ScalarType.Byte, [size], seed: i))))
            .ToList();
    }

    Tensor Track(Tensor t)
    {
        _tensors.Add(t);
        return t;
    }

    [Fact]
    public void Write_Sharded_SplitsExactlyLikeHuggingFaceHub()
    {
        // Prepare: with max 10 bytes huggingface_hub gives [layer_1], [layer_3], [layer_2], [layer_4, layer_5]: layer_3
        // (30 bytes) gets its own shard at once, before layer_2's shard is closed.
        var state = HubTestStateDict();

        // Execute
        CheckpointWriter.Write(_dir.Path, state, maxShardBytes: 10);

        // Assert
        var index = JsonDocument.Parse(File.ReadAllText(_dir.File(CheckpointFolder.IndexFileName))).RootElement;
        Assert.Equal(50, index.GetProperty("metadata").GetProperty("total_size").GetInt64());
        var weightMap = index.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        Assert.Equal(new Dictionary<string, string?>
        {
            ["layer_1"] = "model-00001-of-00004.safetensors",
            ["layer_2"] = "model-00003-of-00004.safetensors",
            ["layer_3"] = "model-00002-of-00004.safetensors",
            ["layer_4"] = "model-00004-of-00004.safetensors",
            ["layer_5"] = "model-00004-of-00004.safetensors",
        }, weightMap);
        Assert.False(File.Exists(_dir.File(CheckpointFolder.SingleFileName)));
        using var shard = SafeTensorsFile.Open(_dir.File("model-00004-of-00004.safetensors"));
        Assert.Equal("pt", shard.Metadata["format"]);
    }

    [Fact]
    public void Write_IndexFile_IsFormattedLikeTransformers()
    {
        // json.dumps(index, indent=2, sort_keys=True) + "\n", with int64 tensors of 8 bytes and a 30-byte limit.
        var state = Enumerable.Range(1, 5)
            .Select(i => new KeyValuePair<string, Tensor>($"layer_{6 - i}", Track(tensor(new long[] { i }))))
            .ToList();

        CheckpointWriter.Write(_dir.Path, state, maxShardBytes: 30);

        var expected = """
            {
              "metadata": {
                "total_size": 40
              },
              "weight_map": {
                "layer_1": "model-00002-of-00002.safetensors",
                "layer_2": "model-00002-of-00002.safetensors",
                "layer_3": "model-00001-of-00002.safetensors",
                "layer_4": "model-00001-of-00002.safetensors",
                "layer_5": "model-00001-of-00002.safetensors"
              }
            }

            """;
        Assert.Equal(expected, File.ReadAllText(_dir.File(CheckpointFolder.IndexFileName)));
    }

    [Fact]
    public void RoundTrip_Sharded_ReadsEveryTensorBack()
    {
        var state = HubTestStateDict();
        CheckpointWriter.Write(_dir.Path, state, maxShardBytes: 10);

        using var folder = CheckpointFolder.Open(_dir.Path);

        Assert.True(folder.IsSharded);
        Assert.Equal(state.Select(kv => kv.Key).Order(), folder.TensorNames.Order());
        foreach (var (name, original) in state)
        {
            using var back = folder.Read(name);
            Assert.Equal(RawBytes(original), RawBytes(back));
            Assert.True(folder.Contains(name));
            Assert.Equal(SafeTensorsDtype.U8, folder.Info(name).Dtype);
        }
        Assert.False(folder.Contains("layer_6"));
    }

    [Fact]
    public void RoundTrip_Single_WithConversionIntoParameter()
    {
        using var weight = RandomFloats([4, 8], seed: 1, ScalarType.BFloat16);
        using var norm = RandomFloats([8], seed: 2);
        CheckpointWriter.Write(_dir.Path, [new("model.embed_tokens.weight", weight), new("model.norm.weight", norm)]);
        using var expected = weight.to_type(ScalarType.Float32, copy: true);

        using var folder = CheckpointFolder.Open(_dir.Path);
        using var destination = zeros(4, 8);
        folder.ReadInto("model.embed_tokens.weight", destination);
        using var normBack = folder.Read("model.norm.weight");

        Assert.False(folder.IsSharded);
        Assert.Equal(new[] { "model.embed_tokens.weight", "model.norm.weight" }, folder.TensorNames);
        Assert.Equal(RawBytes(expected), RawBytes(destination));
        Assert.Equal(RawBytes(norm), RawBytes(normBack));
        Assert.Equal(new[] { CheckpointFolder.SingleFileName }, Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Write_SwitchingBetweenSingleAndSharded_RemovesTheOtherLayout()
    {
        var state = HubTestStateDict();

        CheckpointWriter.Write(_dir.Path, state);
        CheckpointWriter.Write(_dir.Path, state, maxShardBytes: 10);
        var sharded = Directory.GetFiles(_dir.Path).Select(Path.GetFileName).Order().ToList();
        CheckpointWriter.Write(_dir.Path, state, maxShardBytes: 46); // [1, 2, 3], [4, 5]: the 4 old shards must go
        var resharded = Directory.GetFiles(_dir.Path).Select(Path.GetFileName).Order().ToList();
        File.WriteAllText(_dir.File("config.json"), "{}");
        CheckpointWriter.Write(_dir.Path, state);
        var single = Directory.GetFiles(_dir.Path).Select(Path.GetFileName).Order().ToList();

        Assert.Equal(5, sharded.Count); // 4 shards + index, no model.safetensors that readers would prefer
        Assert.DoesNotContain(CheckpointFolder.SingleFileName, sharded);
        Assert.Equal(
            ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", CheckpointFolder.IndexFileName],
            resharded);
        Assert.Equal(["config.json", CheckpointFolder.SingleFileName], single);
    }

    [Fact]
    public void Open_ShardMissing_NamesIndexShardAndTensor()
    {
        CheckpointWriter.Write(_dir.Path, HubTestStateDict(), maxShardBytes: 10);
        File.Delete(_dir.File("model-00003-of-00004.safetensors"));

        var error = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(_dir.Path));

        Assert.Contains(_dir.File(CheckpointFolder.IndexFileName), error.Message);
        Assert.Contains("'model-00003-of-00004.safetensors'", error.Message);
        Assert.Contains("'layer_2'", error.Message);
        Assert.Contains("model-00004-of-00004.safetensors", error.Message); // lists what is there
    }

    [Fact]
    public void Open_TensorMissingFromItsShard_NamesShardAndTensor()
    {
        CheckpointWriter.Write(_dir.Path, HubTestStateDict(), maxShardBytes: 10);
        var indexPath = _dir.File(CheckpointFolder.IndexFileName);
        File.WriteAllText(indexPath, File.ReadAllText(indexPath).Replace(
            "\"layer_1\": \"model-00001-of-00004.safetensors\"", "\"layer_1\": \"model-00002-of-00004.safetensors\""));

        var error = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(_dir.Path));

        Assert.Contains("'layer_1'", error.Message);
        Assert.Contains(_dir.File("model-00002-of-00004.safetensors"), error.Message);
        Assert.Contains("does not contain it", error.Message);
    }

    [Theory]
    [InlineData("{\"weight_map\": {\"w\": \"../elsewhere.safetensors\"}}", "not a file name in the folder")]
    [InlineData("{\"metadata\": {}}", "no \"weight_map\"")]
    [InlineData("{\"weight_map\": {\"w\": 3}}", "'w'")]
    [InlineData("{\"weight_map\": ", "not valid JSON")]
    public void Open_InvalidIndex_IsRejected(string index, string reason)
    {
        var indexPath = _dir.File(CheckpointFolder.IndexFileName);
        File.WriteAllText(indexPath, index);

        var error = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(_dir.Path));

        Assert.Contains(indexPath, error.Message);
        Assert.Contains(reason, error.Message);
    }

    [Fact]
    public void Open_FolderWithoutSafetensors_ListsContentsAndRefusesPickles()
    {
        File.WriteAllText(_dir.File("config.json"), "{}");
        File.WriteAllBytes(_dir.File("pytorch_model.bin"), [0x80, 0x02]);

        var error = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(_dir.Path));

        Assert.Contains(_dir.Path, error.Message);
        Assert.Contains("It holds: config.json, pytorch_model.bin.", error.Message);
        Assert.Contains(".bin checkpoints are pickles", error.Message);
        Assert.Contains("not supported", error.Message);
    }

    [Fact]
    public void ReadInto_Errors_NameFolderOrShardAndTensor()
    {
        CheckpointWriter.Write(_dir.Path, HubTestStateDict(), maxShardBytes: 10);
        using var folder = CheckpointFolder.Open(_dir.Path);
        using var wrongShape = zeros([5], ScalarType.Byte);

        var missing = Assert.Throws<CheckpointException>(() => folder.Read("layer_9"));
        var shape = Assert.Throws<CheckpointException>(() => folder.ReadInto("layer_2", wrongShape));

        Assert.Contains(_dir.Path, missing.Message);
        Assert.Contains("'layer_9'", missing.Message);
        Assert.Contains(_dir.File("model-00003-of-00004.safetensors"), shape.Message);
        Assert.Contains("'layer_2'", shape.Message);
        Assert.Contains("[10]", shape.Message);
        Assert.Contains("[5]", shape.Message);
    }

    [Fact]
    public void Open_MissingFolder_NamesIt()
    {
        var path = _dir.File("absent");

        var error = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(path));

        Assert.Contains(path, error.Message);
    }
}
