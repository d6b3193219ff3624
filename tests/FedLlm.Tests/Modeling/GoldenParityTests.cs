using FedLlm.Checkpoints;
using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Peft;
using static TorchSharp.torch;

namespace FedLlm.Tests.Modeling;

/// <summary>
/// FedLlm against the independent plain-PyTorch reference (tests/reference/make_golden.py): logits, loss, rotary
/// frequencies and greedy decoding of tiny random checkpoints of each family, within 1e-4.
/// </summary>
public class GoldenParityTests
{
    const double Tolerance = 1e-4;

    public static string GoldenDirectory(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden", name);

    public static TheoryData<string> Cases => new()
    {
        "llama_gqa", "llama3_rope_scaling", "qwen2_bias", "mistral", "smollm_tied", "llama_bf16", "llama_attention_bias",
    };

    static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        double worst = (expected.to(ScalarType.Float64) - actual.to(ScalarType.Float64)).abs().max().item<double>();
        Assert.True(worst <= Tolerance, $"{what}: max abs difference {worst:E3} > {Tolerance:E0}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Logits_and_loss_match_the_reference(string name)
    {
        string dir = GoldenDirectory(name);
        using var model = ModelLoader.Load(dir);
        using var golden = SafeTensorsFile.Open(Path.Combine(dir, "golden.safetensors"));
        using var noGrad = no_grad();
        using var ids = golden.Read("input_ids");
        using var mask = golden.Read("attention_mask");
        using var labels = golden.Read("labels");
        using var logits = model.Forward(ids, mask);
        using var expectedLogits = golden.Read("logits");
        AssertClose(expectedLogits, logits, $"{name} logits");
        using var loss = model.Loss(ids, labels, mask);
        using var expectedLoss = golden.Read("loss");
        AssertClose(expectedLoss.reshape(-1), loss.reshape(-1), $"{name} loss");
        using var expectedFrequencies = golden.Read("inv_freq");
        AssertClose(expectedFrequencies, RotaryEmbedding.ComputeInverseFrequencies(model.Config), $"{name} inv_freq");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Greedy_decoding_with_the_kv_cache_matches_the_reference(string name)
    {
        string dir = GoldenDirectory(name);
        using var model = ModelLoader.Load(dir);
        using var golden = SafeTensorsFile.Open(Path.Combine(dir, "golden.safetensors"));
        AssertGreedy(model, golden, name);
    }

    internal static void AssertGreedy(LlamaForCausalLM model, SafeTensorsFile golden, string name)
    {
        using var prompt = golden.Read("greedy_prompt");
        using var expected = golden.Read("greedy_tokens");
        var generator = new TextGenerator(model, new IdTokenizer(model.Config.VocabSize));
        var options = new GenerationOptions { MaxNewTokens = (int)expected.shape[1] };
        var tokens = generator.GenerateIds(new[] { prompt.data<long>().ToArray() }, options)[0];
        Assert.Equal(expected.data<long>().ToArray(), tokens.ToArray());
    }

    [Fact]
    public void A_peft_adapter_written_by_the_reference_loads_and_gives_its_logits()
    {
        using var model = ModelLoader.Load(GoldenDirectory("llama_gqa"));
        string adapterDir = GoldenDirectory("peft_lora");
        var options = AdapterIO.Load(adapterDir, model);
        Assert.Equal(4, options.Rank);
        Assert.Equal(8.0, options.Alpha);
        model.eval();
        using var golden = SafeTensorsFile.Open(Path.Combine(adapterDir, "golden_with_adapter.safetensors"));
        using var noGrad = no_grad();
        using var ids = golden.Read("input_ids");
        using var mask = golden.Read("attention_mask");
        using var logits = model.Forward(ids, mask);
        using var expected = golden.Read("logits");
        AssertClose(expected, logits, "adapter logits");
        AssertGreedy(model, golden, "adapter");
    }

    [Fact]
    public void Saved_checkpoints_and_adapters_round_trip_bit_exact()
    {
        using var model = ModelLoader.Load(GoldenDirectory("llama_gqa"));
        AdapterIO.Load(GoldenDirectory("peft_lora"), model);
        string dir = Directory.CreateTempSubdirectory().FullName;
        ModelLoader.Save(Path.Combine(dir, "model"), model);
        var options = AdapterIO.ReadOptions(GoldenDirectory("peft_lora"));
        AdapterIO.Save(Path.Combine(dir, "adapter"), model, options);

        using var reloaded = ModelLoader.Load(Path.Combine(dir, "model"));
        AdapterIO.Load(Path.Combine(dir, "adapter"), reloaded);
        var original = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var copy = reloaded.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal(original.Keys.OrderBy(k => k), copy.Keys.OrderBy(k => k));
        foreach (var (key, tensor) in original)
            Assert.True(tensor.bytes.SequenceEqual(copy[key].bytes), $"{key} differs after save/load");
        // The adapter file uses PEFT's key names, pinned here.
        using var file = SafeTensorsFile.Open(Path.Combine(dir, "adapter", AdapterIO.WeightsFileName));
        Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", file.Tensors.Keys);
        Assert.Contains("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", file.Tensors.Keys);
    }

    [Fact]
    public void Missing_tensors_name_the_tensor()
    {
        string dir = Directory.CreateTempSubdirectory().FullName;
        File.Copy(Path.Combine(GoldenDirectory("llama_gqa"), "config.json"), Path.Combine(dir, "config.json"));
        using (var source = SafeTensorsFile.Open(Path.Combine(GoldenDirectory("llama_gqa"), "model.safetensors")))
        {
            var kept = source.Tensors.Keys.Where(k => k != "model.layers.1.mlp.up_proj.weight")
                .Select(k => new KeyValuePair<string, Tensor>(k, source.Read(k))).ToList();
            SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), kept);
        }
        var e = Assert.ThrowsAny<Exception>(() => ModelLoader.Load(dir));
        Assert.Contains("model.layers.1.mlp.up_proj.weight", e.Message);
    }
}

/// <summary>A stand-in tokenizer for id-level tests: no text, no EOS, pad 0.</summary>
internal sealed class IdTokenizer(int vocabSize) : FedLlm.Tokenization.ITextTokenizer
{
    public int VocabSize => vocabSize;
    public int? BosTokenId => null;
    public int? EosTokenId => null;
    public int? PadTokenId => 0;
    public string? ChatTemplate => null;
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false) => text.Split(' ').Select(int.Parse).ToList();
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true) => string.Join(' ', ids);
    public int? TokenToId(string token) => int.TryParse(token, out int id) ? id : null;
}
