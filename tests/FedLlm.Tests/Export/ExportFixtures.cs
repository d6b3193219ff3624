using FedLlm.Defaults;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Tests.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Export;

/// <summary>Model folders the export tests share: the embedded default and a tiny Llama 3 with the real Llama 3 tokenizer.</summary>
internal static class ExportFixtures
{
    /// <summary>The embedded default (byte-level BPE tokenizer, GQA, tied head), built into <paramref name="cacheRoot"/>.</summary>
    public static string DefaultModel(string cacheRoot) => EmbeddedDefault.Ensure(cacheRoot: cacheRoot).ModelDirectory;

    /// <summary>
    /// Llama 3.2's shape at toy size: the full 128,256-token vocabulary with the committed Llama 3 tokenizer (llama-bpe
    /// pre-tokenizer, chat template, &lt;|eot_id|&gt; stop), GQA, tied embeddings and rope_scaling "llama3", whose
    /// rotary factors GGUF carries as a tensor. Projection weights are large enough (std 0.3) that attention and the
    /// MLP outweigh each token's own embedding (else greedy decoding repeats the last token), and the embedding (std 1)
    /// keeps greedy choices clear of ties.
    /// </summary>
    public static string Llama3Model(string folder)
    {
        var config = new LlamaConfig
        {
            VocabSize = 128256,
            HiddenSize = 64,
            IntermediateSize = 128,
            NumHiddenLayers = 2,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 2,
            HeadDim = 16,
            RmsNormEps = 1e-5,
            RopeTheta = 500000,
            RopeScaling = new RopeScaling("llama3", 8.0, 1.0, 4.0, 64),
            MaxPositionEmbeddings = 512,
            TieWordEmbeddings = true,
            BosTokenId = 128000,
            EosTokenIds = [128001, 128009],
        };
        Directory.CreateDirectory(folder);
        using (var model = LlamaForCausalLM.CreateRandom(config, seed: 7, std: 0.3, embeddingStd: 1.0))
            ModelLoader.Save(folder, model);
        TokenizerFixtures.Materialize("llama3", folder);
        return folder;
    }

    /// <summary>A LoRA adapter on every projection with B drawn non-zero, so merging it visibly changes the model.</summary>
    public static string RandomAdapter(string modelDirectory, string folder, long seed = 11, double bStd = 0.05)
    {
        using var model = ModelLoader.Load(modelDirectory);
        var options = new LoraOptions
        {
            Rank = 4, Alpha = 8, Dropout = 0, TargetModules = LoraOptions.AllLlamaProjections,
        };
        var generator = new Generator((ulong)seed);
        var sites = LoraInjector.Inject(model, options, generator);
        using (no_grad())
        {
            foreach (var site in sites)
            {
                using var b = normal(0, bStd, site.Layer.LoraB.shape, generator: generator);
                site.Layer.LoraB.copy_(b);
            }
        }
        AdapterIO.Save(folder, model, options);
        return folder;
    }
}
