using FedLlm.Data;
using FedLlm.Defaults;
using FedLlm.Export;
using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Tests.Tokenization;
using FedLlm.Tokenization;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FedLlm.Tests.Export;

/// <summary>The two model folders and their GGUF exports, built once for all tests of the class.</summary>
public sealed class GgufExports : IDisposable
{
    readonly TempFolder folder = new();

    public GgufExports()
    {
        Folders = new Dictionary<string, string>
        {
            ["default"] = ExportFixtures.DefaultModel(Path.Combine(folder.Path, "cache")),
            ["llama3"] = ExportFixtures.Llama3Model(Path.Combine(folder.Path, "llama3")),
        };
    }

    public IReadOnlyDictionary<string, string> Folders { get; }

    public string Root => folder.Path;

    readonly Dictionary<string, string> files = new();

    /// <summary>The GGUF of <paramref name="model"/> as <paramref name="type"/>, exported on first request.</summary>
    public string Gguf(string model, GgmlType type)
    {
        lock (files)
        {
            string key = $"{model}-{type}";
            if (!files.TryGetValue(key, out var path))
            {
                path = Path.Combine(folder.Path, key + ".gguf");
                GgufLlamaExporter.Export(Folders[model], path, new GgufExportOptions { WeightType = type });
                files[key] = path;
            }
            return path;
        }
    }

    public void Dispose() => folder.Dispose();
}

/// <summary>
/// Exported GGUF files run in llama.cpp (LLamaSharp's CPU backend) and are compared with FedLlm's own generation on the
/// same token ids: greedy continuations, per-position argmax under the same context, and tokenization.
/// </summary>
public sealed class GgufLlamaCppTests(GgufExports exports, ITestOutputHelper output) : IClassFixture<GgufExports>
{
    const int NewTokens = 32;

    static readonly string[] DefaultPrompts =
    [
        PromptTemplate.Alpaca.FormatPrompt(EmbeddedDefault.SamplePrompt),
        "Shares of the company rose after",
        "### Response:",
        "Quarterly revenue fell 4% as demand weakened",
    ];

    static readonly string[] Llama3Prompts =
    [
        "The capital of France is",
        "<|start_header_id|>user<|end_header_id|>\n\nWrite a haiku about rain.<|eot_id|>",
        "def fibonacci(n):\n    return",
        "Ünïcödé and numbers 12345 🦙",
    ];

    static string[] Prompts(string model) => model == "default" ? DefaultPrompts : Llama3Prompts;

    /// <summary>FedLlm's greedy continuations of each prompt, encoded with BOS by FedLlm's tokenizer.</summary>
    (List<int[]> Prompts, List<int[]> Continuations, IReadOnlySet<long> Eos) FedLlmGreedy(string model, string? adapter = null)
    {
        string directory = exports.Folders[model];
        var tokenizer = TokenizerLoader.Load(directory);
        using var llama = ModelLoader.Load(directory);
        if (adapter is not null) AdapterIO.Load(adapter, llama);
        var generator = new TextGenerator(llama, tokenizer);
        var prompts = Prompts(model).Select(p => tokenizer.Encode(p, addSpecialTokens: true).ToArray()).ToList();
        var continuations = prompts
            .Select(p => generator.GenerateIds([p.Select(i => (long)i).ToArray()], new GenerationOptions { MaxNewTokens = NewTokens })[0]
                .Select(i => (int)i).ToArray())
            .ToList();
        return (prompts, continuations, generator.EosIds);
    }

    [Theory]
    [InlineData("default")]
    [InlineData("llama3")]
    public void F32GivesFedLlmsGreedyTokens(string model)
    {
        var (prompts, expected, eos) = FedLlmGreedy(model);
        using var llamaCpp = new LlamaCppModel(exports.Gguf(model, GgmlType.F32));
        for (int i = 0; i < prompts.Count; i++)
        {
            var actual = llamaCpp.Greedy(prompts[i], NewTokens, eos);
            output.WriteLine($"{model} prompt {i}: FedLlm {expected[i].Length} tokens, llama.cpp {actual.Count}");
            Assert.Equal(expected[i], actual);
        }
        // The untrained default mostly repeats its last token (its layers are weak next to its embedding), so the
        // varied continuations this comparison needs come from the Llama 3 fixture and the adapter test below.
        if (model != "default") AssertVaried(expected);
    }

    /// <summary>Continuations that stop at once or repeat one token would make an equality check weak.</summary>
    static void AssertVaried(List<int[]> continuations) =>
        Assert.True(continuations.Sum(c => c.Distinct().Count()) >= continuations.Count * 4, "the continuations are too uniform to compare");

    [Theory]
    [InlineData("default")]
    [InlineData("llama3")]
    public void F32LogitsMatchFedLlms(string model)
    {
        var (prompts, continuations, _) = FedLlmGreedy(model);
        using var llamaCpp = new LlamaCppModel(exports.Gguf(model, GgmlType.F32));
        using var llama = ModelLoader.Load(exports.Folders[model]);
        float worst = 0, largest = 0;
        for (int i = 0; i < prompts.Count; i++)
        {
            var ids = prompts[i].Concat(continuations[i]).ToArray();
            var theirs = llamaCpp.Logits(ids);
            using var input = tensor(ids.Select(x => (long)x).ToArray()).unsqueeze(0);
            using var logits = llama.Forward(input);
            var ours = logits.data<float>().ToArray();
            int vocab = theirs[0].Length;
            for (int t = 0; t < ids.Length; t++)
                for (int v = 0; v < vocab; v++)
                {
                    worst = Math.Max(worst, Math.Abs(ours[t * vocab + v] - theirs[t][v]));
                    largest = Math.Max(largest, Math.Abs(ours[t * vocab + v]));
                }
        }
        output.WriteLine($"{model}: max |Δlogit| FedLlm vs llama.cpp f32 = {worst:E2}, max |logit| {largest:F1}");
        // Float32 on both sides, summed in different orders: a wrong permutation or rotary factor moves logits by whole units.
        Assert.True(worst < 1e-3f, $"max |Δlogit| {worst} against max |logit| {largest}");
    }

    /// <summary>
    /// Agreement of a lower-precision file with FedLlm's float32 model: under the same context (FedLlm's greedy sequence
    /// fed to llama.cpp), the fraction of positions where llama.cpp's argmax is FedLlm's next token.
    /// </summary>
    [Theory]
    [InlineData("default", GgmlType.F16, 0.95)]
    [InlineData("llama3", GgmlType.F16, 0.95)]
    [InlineData("default", GgmlType.Q8_0, 0.90)]
    // The Llama 3 fixture's random layers amplify small perturbations (its free-running continuations part after a
    // few tokens), and llama.cpp also rounds activations to 8 bits in Q8_0 matmuls; hence the looser bound.
    [InlineData("llama3", GgmlType.Q8_0, 0.75)]
    public void LowerPrecisionAgreesWithFedLlmsGreedyTokens(string model, GgmlType type, double bound)
    {
        var (prompts, continuations, eos) = FedLlmGreedy(model);
        using var llamaCpp = new LlamaCppModel(exports.Gguf(model, type));
        int agree = 0, total = 0, identicalRuns = 0;
        for (int i = 0; i < prompts.Count; i++)
        {
            var ids = prompts[i].Concat(continuations[i]).ToArray();
            var logits = llamaCpp.Logits(ids);
            for (int t = prompts[i].Length - 1; t < ids.Length - 1; t++, total++)
                if (LlamaCppModel.ArgMax(logits[t]) == ids[t + 1]) agree++;
            if (llamaCpp.Greedy(prompts[i], NewTokens, eos).SequenceEqual(continuations[i])) identicalRuns++;
        }
        double agreement = (double)agree / total;
        output.WriteLine($"{model} {type}: same argmax at {agree}/{total} positions ({agreement:P1}); " +
            $"identical free-running continuations {identicalRuns}/{prompts.Count}");
        Assert.True(agreement >= bound, $"{model} {type}: agreement {agreement:P1} < {bound:P0}");
    }

    [Fact]
    public void DefaultTokenizerMetadataTokenizesAsFedLlm()
    {
        var tokenizer = TokenizerLoader.Load(exports.Folders["default"]);
        using var llamaCpp = new LlamaCppModel(exports.Gguf("default", GgmlType.F32));
        string[] texts = [.. DefaultPrompts, "  two  spaces, tabs\tand\nnewlines", "it's 'quoted' and don't", "<|end_of_text|> inside", "ÄÖÜ €100"];
        foreach (var text in texts)
            Assert.Equal(tokenizer.Encode(text, addSpecialTokens: true).ToArray(), llamaCpp.Tokenize(text, addBos: true));
    }

    /// <summary>The committed Llama 3 golden strings (from Hugging Face tokenizers) tokenized by llama.cpp's llama-bpe.</summary>
    [Fact]
    public void Llama3TokenizerMetadataTokenizesAsTheReference()
    {
        using var llamaCpp = new LlamaCppModel(exports.Gguf("llama3", GgmlType.F32));
        var cases = TokenizerFixtures.Golden("llama3");
        var mismatches = cases.Where(c => !llamaCpp.Tokenize(c.Text, addBos: false).SequenceEqual(c.Ids)).Select(c => c.Text).ToList();
        output.WriteLine($"llama3: {cases.Count - mismatches.Count}/{cases.Count} golden strings tokenized identically");
        foreach (var text in mismatches) output.WriteLine($"  differs: {System.Text.Json.JsonSerializer.Serialize(text)}");
        Assert.Empty(mismatches);
        var tokenizer = TokenizerLoader.Load(exports.Folders["llama3"]);
        foreach (var text in Llama3Prompts)
            Assert.Equal(tokenizer.Encode(text, addSpecialTokens: true).ToArray(), llamaCpp.Tokenize(text, addBos: true));
    }

    [Fact]
    public void AnAdapterMergedAtExportMatchesFedLlmWithTheAdapter()
    {
        // B large enough that the adapted layers outweigh the embedding, so the continuations vary.
        string adapter = ExportFixtures.RandomAdapter(exports.Folders["default"], Path.Combine(exports.Root, "adapter"), bStd: 1.0);
        string path = Path.Combine(exports.Root, "default-adapter-f32.gguf");
        GgufLlamaExporter.Export(exports.Folders["default"], path, new GgufExportOptions { WeightType = GgmlType.F32, AdapterDirectory = adapter });

        var (prompts, expected, eos) = FedLlmGreedy("default", adapter);
        var (_, baseContinuations, _) = FedLlmGreedy("default");
        Assert.NotEqual(baseContinuations, expected); // the adapter changes what the model says
        AssertVaried(expected);
        using var llamaCpp = new LlamaCppModel(path);
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(expected[i], llamaCpp.Greedy(prompts[i], NewTokens, eos));
    }
}
