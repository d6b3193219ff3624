using System.Text.Json.Nodes;
using FedLlm.Checkpoints;
using FedLlm.Export;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Quantization;
using FedLlm.Tests.Tokenization;
using static TorchSharp.torch;

namespace FedLlm.Tests.Export;

public sealed class MergedCheckpointWriterTests : IDisposable
{
    readonly TempFolder folder = new();
    readonly string baseDir;
    readonly string adapterDir;
    static readonly long[] Ids = [1, 17, 5, 42, 8, 63, 2, 90, 33, 11, 70, 4];

    public MergedCheckpointWriterTests()
    {
        baseDir = Path.Combine(folder.Path, "base");
        Directory.CreateDirectory(baseDir);
        using (var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: false), seed: 3, std: 0.1))
            ModelLoader.Save(baseDir, model);
        File.WriteAllText(Path.Combine(baseDir, "tokenizer_config.json"), "{\"bos_token\": \"<s>\"}");
        adapterDir = ExportFixtures.RandomAdapter(baseDir, Path.Combine(folder.Path, "adapter"));
    }

    public void Dispose() => folder.Dispose();

    /// <summary>Logits (1, T, V) of base + adapter computed unmerged, through LoraLinear's forward.</summary>
    float[] AdapterLogits()
    {
        using var model = ModelLoader.Load(baseDir);
        AdapterIO.Load(adapterDir, model);
        using var input = tensor(Ids).unsqueeze(0);
        using var logits = model.Forward(input);
        return logits.data<float>().ToArray();
    }

    static float[] Logits(string directory, ScalarType dtype = ScalarType.Float32)
    {
        using var model = ModelLoader.Load(directory, dtype);
        using var input = tensor(Ids).unsqueeze(0);
        using var logits = model.Forward(input);
        using var asFloat = logits.to(ScalarType.Float32);
        return asFloat.data<float>().ToArray();
    }

    static float MaxAbsDiff(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max();

    [Fact]
    public void Fp32MergeReloadsWithTheLogitsOfBasePlusAdapter()
    {
        string output = Path.Combine(folder.Path, "merged");
        MergedCheckpointWriter.Write(baseDir, adapterDir, output, new MergeOptions());

        var expected = AdapterLogits();
        var merged = Logits(output);
        Assert.True(MaxAbsDiff(expected, merged) < 1e-4f, $"max |Δlogit| {MaxAbsDiff(expected, merged)}");
        // The adapter must matter, or the comparison above could not tell a merge from a copy of the base.
        Assert.True(MaxAbsDiff(Logits(baseDir), merged) > 1e-2f);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!;
        Assert.Equal("float32", config["torch_dtype"]!.GetValue<string>());
        Assert.True(File.Exists(Path.Combine(output, "generation_config.json")));
        Assert.True(File.Exists(Path.Combine(output, "tokenizer_config.json")));
        using var checkpoint = CheckpointFolder.Open(output);
        Assert.DoesNotContain(checkpoint.TensorNames, k => k.Contains("lora_", StringComparison.Ordinal) || k.Contains("base_layer", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("bf16", "bfloat16", 0.05)]
    [InlineData("fp16", "float16", 0.01)]
    public void HalfPrecisionMergesLoadAndStayClose(string dtype, string torchDtype, double bound)
    {
        string output = Path.Combine(folder.Path, "merged-" + dtype);
        MergedCheckpointWriter.Write(baseDir, adapterDir, output, new MergeOptions { Dtype = MergeOptions.ParseDtype(dtype) });

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!;
        Assert.Equal(torchDtype, config["torch_dtype"]!.GetValue<string>());
        using (var checkpoint = CheckpointFolder.Open(output))
            Assert.All(checkpoint.TensorNames, n => Assert.Equal(MergeOptions.ParseDtype(dtype), checkpoint.Info(n).Dtype.ToScalarType()));
        // Loaded back to float32, only the rounding of the stored weights separates it from base + adapter.
        float diff = MaxAbsDiff(AdapterLogits(), Logits(output));
        Assert.True(diff < bound, $"{dtype}: max |Δlogit| {diff}");
    }

    [Fact]
    public void AboveTheShardSizeTheWeightsAreShardedWithAnIndex()
    {
        string output = Path.Combine(folder.Path, "sharded");
        MergedCheckpointWriter.Write(baseDir, adapterDir, output, new MergeOptions { MaxShardBytes = 16 * 1024 });

        Assert.True(File.Exists(Path.Combine(output, CheckpointFolder.IndexFileName)));
        Assert.False(File.Exists(Path.Combine(output, CheckpointFolder.SingleFileName)));
        Assert.True(Directory.GetFiles(output, "model-*-of-*.safetensors").Length > 1);
        Assert.True(MaxAbsDiff(AdapterLogits(), Logits(output)) < 1e-4f);
    }

    [Theory]
    [InlineData(BasePrecision.Int8)]
    [InlineData(BasePrecision.Nf4)]
    public void QuantisedBasesAreRefused(BasePrecision precision)
    {
        var e = Assert.Throws<NotSupportedException>(() =>
            MergedCheckpointWriter.Write(baseDir, adapterDir, Path.Combine(folder.Path, "out"), new MergeOptions { BasePrecision = precision }));
        Assert.Contains("re-quantised", e.Message);
        Assert.False(Directory.Exists(Path.Combine(folder.Path, "out")));
    }

    [Fact]
    public void ACheckpointWithAQuantizationConfigIsRefused()
    {
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(baseDir, "config.json")))!.AsObject();
        config["quantization_config"] = new JsonObject { ["load_in_4bit"] = true };
        File.WriteAllText(Path.Combine(baseDir, "config.json"), config.ToJsonString());
        var e = Assert.Throws<NotSupportedException>(() =>
            MergedCheckpointWriter.Write(baseDir, adapterDir, Path.Combine(folder.Path, "out"), new MergeOptions()));
        Assert.Contains("quantization_config", e.Message);
    }
}
