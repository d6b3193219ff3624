using FedLlm.Modeling;
using FedLlm.Quantization;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>The benchmark shapes, and random checkpoints of them written once to a scratch folder.</summary>
public static class BenchModels
{
    /// <summary>Llama-3.2-1B's shape (hidden 2048, 16 layers, 32 heads over 8 KV heads, FFN 8192, vocab 128256, tied head).</summary>
    public static readonly LlamaConfig Llama32_1B = new()
    {
        Family = ModelFamily.Llama,
        VocabSize = 128256,
        HiddenSize = 2048,
        IntermediateSize = 8192,
        NumHiddenLayers = 16,
        NumAttentionHeads = 32,
        NumKeyValueHeads = 8,
        HeadDim = 64,
        RmsNormEps = 1e-5,
        RopeTheta = 500000,
        MaxPositionEmbeddings = 2048,
        TieWordEmbeddings = true,
    };

    /// <summary>Writes a random checkpoint of <paramref name="config"/> in <paramref name="dtype"/> unless <paramref name="directory"/> already holds one.</summary>
    public static void EnsureCheckpoint(string directory, LlamaConfig config, ScalarType dtype, long seed, TextWriter log)
    {
        if (File.Exists(Path.Combine(directory, "config.json"))) return;
        log.WriteLine($"writing a random {config.NumHiddenLayers}-layer, hidden {config.HiddenSize} checkpoint ({dtype}) to {directory}");
        using (var model = LlamaForCausalLM.CreateRandom(config, seed, std: 0.02, dtype: dtype))
            ModelLoader.Save(directory + ".partial", model, maxShardBytes: 2L << 30);
        Directory.Move(directory + ".partial", directory); // a killed writer never leaves a half checkpoint behind
    }

    /// <summary>
    /// FLOPs of one training step with a frozen base and LoRA adapters (the formula the README states):
    /// tokens · (4 · N_frozen + 6 · N_lora) + 12 · L · H · T · tokens.
    /// Frozen matmul weights need forward (2 N) and the input gradient (2 N) but no weight gradient; the adapters need all
    /// three (6 N); attention scores and values are 4 · T · H per token and layer forward, three times that with backward.
    /// N_frozen counts the seven projections and the (tied) head, not the embedding lookup; every token is labelled here.
    /// </summary>
    public static double StepFlops(LlamaConfig c, long loraParameters, long batch, long seq)
    {
        long h = c.HiddenSize, kv = (long)c.NumKeyValueHeads * c.HeadDim, q = (long)c.NumAttentionHeads * c.HeadDim;
        long perLayer = h * q + 2 * h * kv + q * h + 3 * h * c.IntermediateSize;
        double frozen = (double)perLayer * c.NumHiddenLayers + (double)c.VocabSize * h;
        double tokens = batch * seq;
        return tokens * (4 * frozen + 6 * loraParameters) + 12.0 * c.NumHiddenLayers * q * seq * tokens;
    }

    /// <summary>Bytes the model holds: parameters and buffers (quantised codes and scales included).</summary>
    public static long ModelBytes(LlamaForCausalLM model) =>
        model.parameters().Sum(p => p.NumberOfElements * p.ElementSize)
        + model.named_modules().Select(m => m.module).OfType<QuantizedLinear>().Sum(q => q.WeightBytes);

    /// <summary>A Llama-2-7B-shaped LoRA (hidden 4096, intermediate 11008, all seven projections of each layer), PEFT-keyed
    /// lora_A (r × in) and lora_B (out × r), random, seeded: what the codec and transfer benchmarks send.</summary>
    public static List<(string Name, Tensor Tensor)> Llama7BAdapter(int layers, int rank)
    {
        const int hidden = 4096, intermediate = 11008;
        var projections = new (string Module, int In, int Out)[]
        {
            ("self_attn.q_proj", hidden, hidden), ("self_attn.k_proj", hidden, hidden), ("self_attn.v_proj", hidden, hidden),
            ("self_attn.o_proj", hidden, hidden), ("mlp.gate_proj", hidden, intermediate), ("mlp.up_proj", hidden, intermediate),
            ("mlp.down_proj", intermediate, hidden),
        };
        using var generator = new Generator(2026);
        var adapter = new List<(string, Tensor)>();
        for (int layer = 0; layer < layers; layer++)
            foreach (var (module, inFeatures, outFeatures) in projections)
            {
                string prefix = $"base_model.model.model.layers.{layer}.{module}";
                adapter.Add(($"{prefix}.lora_A.weight", (randn([rank, inFeatures], generator: generator) * 0.02f).DetachFromDisposeScope()));
                adapter.Add(($"{prefix}.lora_B.weight", (randn([outFeatures, rank], generator: generator) * 0.02f).DetachFromDisposeScope()));
            }
        return adapter;
    }
}
