using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Export;

/// <summary>Settings of <see cref="GgufLlamaExporter.Export"/>.</summary>
public sealed record GgufExportOptions
{
    /// <summary>Type of the 2-D weights; norms and rotary factors stay F32, as llama.cpp expects.</summary>
    public GgmlType WeightType { get; init; } = GgmlType.F16;

    /// <summary>A PEFT adapter folded into the weights before export, or null.</summary>
    public string? AdapterDirectory { get; init; }

    /// <summary>general.name; default the model folder's name.</summary>
    public string? Name { get; init; }

    /// <summary>Parses the CLI spelling: f32, f16 or q8_0.</summary>
    public static GgmlType ParseType(string text) => text.ToLowerInvariant() switch
    {
        "f32" or "fp32" => GgmlType.F32,
        "f16" or "fp16" => GgmlType.F16,
        "q8_0" or "q8" => GgmlType.Q8_0,
        _ => throw new ArgumentException($"--type '{text}' is not one of f32, f16, q8_0"),
    };
}

/// <summary>What an export wrote.</summary>
/// <param name="F16Fallbacks">Tensors asked for as Q8_0 whose rows are not a multiple of 32, written as F16 instead.</param>
/// <param name="Path">The GGUF file written.</param>
/// <param name="TensorCount">Tensors in the file.</param>
/// <param name="Bytes">The file's size in bytes.</param>
public sealed record GgufExportResult(string Path, int TensorCount, long Bytes, IReadOnlyList<string> F16Fallbacks);

/// <summary>
/// Writes a Llama-family checkpoint (optionally with a LoRA adapter merged in) as a GGUF file of llama.cpp's "llama"
/// architecture, with the tokenizer in the metadata: what llama.cpp's convert_hf_to_gguf.py produces for LlamaModel.
/// </summary>
/// <remarks>
/// <para>
/// The one non-obvious step is the rotary layout. Hugging Face rotates the two halves of each head together
/// (rotate_half); ggml's "normal" rope rotates adjacent pairs. Reordering the rows of q_proj and k_proj per head, so
/// that row i of the first half and row i of the second half become rows 2i and 2i+1, turns one into the other
/// without changing the attention scores (q·k is a sum over the same pairs, only in another order).
/// </para>
/// <para>
/// Llama 3.1's rope_scaling "llama3" is not a GGUF key: llama.cpp divides each rotary frequency by a per-frequency
/// factor read from the tensor rope_freqs.weight, which is the ratio of the unscaled to the scaled inverse frequency.
/// "linear" scaling is written as llama.rope.scaling.type/factor.
/// </para>
/// </remarks>
public static class GgufLlamaExporter
{
    /// <summary>Loads the checkpoint in <paramref name="modelDirectory"/> in fp32, merges the adapter the options name
    /// (if any), and writes it with its tokenizer as a GGUF file at <paramref name="outputPath"/>.</summary>
    /// <exception cref="NotSupportedException">The architecture or tokenizer has no GGUF mapping here (the message
    /// names what).</exception>
    public static GgufExportResult Export(string modelDirectory, string outputPath, GgufExportOptions options)
    {
        using var model = ModelLoader.Load(modelDirectory, BaseWeights.Fp32);
        var config = model.Config;
        CheckSupported(config, modelDirectory);
        if (options.AdapterDirectory is not null)
        {
            AdapterIO.Load(options.AdapterDirectory, model);
            LoraInjector.MergeAll(model);
        }
        var vocabulary = GgufVocabulary.Read(modelDirectory, config.VocabSize);

        var writer = new GgufWriter();
        writer.AddString("general.architecture", "llama");
        writer.AddString("general.name", options.Name ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDirectory))));
        writer.AddUInt32("general.file_type", options.WeightType switch { GgmlType.F32 => 0u, GgmlType.F16 => 1u, _ => 7u }); // LLAMA_FTYPE_*
        if (options.WeightType == GgmlType.Q8_0) writer.AddUInt32("general.quantization_version", 2);
        WriteHyperParameters(writer, config);
        vocabulary.WriteTo(writer);

        using var scope = NewDisposeScope();
        var fallbacks = new List<string>();
        int count = 0;
        foreach (var (name, tensor) in Tensors(model))
        {
            count++;
            var type = tensor.dim() == 1 ? GgmlType.F32 : options.WeightType;
            if (tensor.shape[^1] % type.BlockSize() != 0)
            {
                type = GgmlType.F16; // as the reference converter does when a row does not split into blocks
                fallbacks.Add(name);
            }
            writer.AddTensor(name, tensor, type);
        }
        writer.Write(outputPath);
        return new GgufExportResult(outputPath, count, new FileInfo(outputPath).Length, fallbacks);
    }

    static void CheckSupported(LlamaConfig config, string directory)
    {
        if (config.Family == ModelFamily.Qwen2)
            throw new NotSupportedException($"{directory}: Qwen2 is llama.cpp's 'qwen2' architecture; only 'llama' is exported here");
        if (config.MlpBias)
            throw new NotSupportedException($"{directory}: mlp_bias has no place in llama.cpp's llama architecture");
        if (config.RopeScaling is { Type: not ("llama3" or "linear") } s)
            throw new NotSupportedException($"{directory}: rope_scaling '{s.Type}' has no GGUF form here");
    }

    static void WriteHyperParameters(GgufWriter writer, LlamaConfig c)
    {
        writer.AddUInt32("llama.vocab_size", (uint)c.VocabSize);
        writer.AddUInt32("llama.context_length", (uint)c.MaxPositionEmbeddings);
        writer.AddUInt32("llama.embedding_length", (uint)c.HiddenSize);
        writer.AddUInt32("llama.feed_forward_length", (uint)c.IntermediateSize);
        writer.AddUInt32("llama.block_count", (uint)c.NumHiddenLayers);
        writer.AddUInt32("llama.attention.head_count", (uint)c.NumAttentionHeads);
        writer.AddUInt32("llama.attention.head_count_kv", (uint)c.NumKeyValueHeads);
        // head_dim may differ from hidden / heads (explicit head_dim in config.json); llama.cpp reads it from these keys.
        writer.AddUInt32("llama.attention.key_length", (uint)c.HeadDim);
        writer.AddUInt32("llama.attention.value_length", (uint)c.HeadDim);
        writer.AddUInt32("llama.rope.dimension_count", (uint)c.HeadDim);
        writer.AddFloat32("llama.rope.freq_base", (float)c.RopeTheta);
        writer.AddFloat32("llama.attention.layer_norm_rms_epsilon", (float)c.RmsNormEps);
        if (c.RopeScaling is { Type: "linear" } linear)
        {
            writer.AddString("llama.rope.scaling.type", "linear");
            writer.AddFloat32("llama.rope.scaling.factor", (float)linear.Factor);
        }
    }

    /// <summary>The model's weights under llama.cpp's names, Q and K rows in ggml's rotary order; tensors belong to the caller's dispose scope.</summary>
    internal static IEnumerable<(string Name, Tensor Tensor)> Tensors(LlamaForCausalLM model)
    {
        var c = model.Config;
        var state = model.named_parameters().ToDictionary(
            p => p.name.Replace(".base_layer.", ".", StringComparison.Ordinal), p => (Tensor)p.parameter, StringComparer.Ordinal);
        yield return ("token_embd.weight", state["model.embed_tokens.weight"]);
        if (c.RopeScaling is { Type: "llama3" }) yield return ("rope_freqs.weight", Llama3RopeFactors(c));
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string hf = $"model.layers.{i}.", gg = $"blk.{i}.";
            yield return (gg + "attn_norm.weight", state[hf + "input_layernorm.weight"]);
            foreach (var (proj, name, heads) in new[] { ("q_proj", "attn_q", c.NumAttentionHeads), ("k_proj", "attn_k", c.NumKeyValueHeads) })
            {
                yield return ($"{gg}{name}.weight", ToInterleavedRotary(state[$"{hf}self_attn.{proj}.weight"], heads));
                if (state.TryGetValue($"{hf}self_attn.{proj}.bias", out var bias)) yield return ($"{gg}{name}.bias", ToInterleavedRotary(bias, heads));
            }
            yield return (gg + "attn_v.weight", state[hf + "self_attn.v_proj.weight"]);
            if (state.TryGetValue(hf + "self_attn.v_proj.bias", out var vBias)) yield return (gg + "attn_v.bias", vBias);
            yield return (gg + "attn_output.weight", state[hf + "self_attn.o_proj.weight"]);
            if (state.TryGetValue(hf + "self_attn.o_proj.bias", out var oBias)) yield return (gg + "attn_output.bias", oBias);
            yield return (gg + "ffn_norm.weight", state[hf + "post_attention_layernorm.weight"]);
            yield return (gg + "ffn_gate.weight", state[hf + "mlp.gate_proj.weight"]);
            yield return (gg + "ffn_up.weight", state[hf + "mlp.up_proj.weight"]);
            yield return (gg + "ffn_down.weight", state[hf + "mlp.down_proj.weight"]);
        }
        yield return ("output_norm.weight", state["model.norm.weight"]);
        // A tied head is absent: llama.cpp then multiplies by token_embd, as the checkpoint does.
        if (!c.TieWordEmbeddings) yield return ("output.weight", state["lm_head.weight"]);
    }

    /// <summary>
    /// Per head, rows [first half | second half] → [h0₀, h1₀, h0₁, h1₁, …]: from rotate_half pairs (i, i + d/2)
    /// to ggml's adjacent pairs (2i, 2i + 1). The reference converter's LlamaModel.permute.
    /// </summary>
    /// <param name="weight">(heads·d, in) or a bias (heads·d).</param>
    /// <param name="heads">Attention heads (query heads for q_proj, key/value heads for k_proj).</param>
    public static Tensor ToInterleavedRotary(Tensor weight, int heads)
    {
        var shape = weight.shape;
        long headDim = shape[0] / heads;
        var rest = shape.Skip(1).ToArray();
        using var split = weight.reshape([heads, 2, headDim / 2, .. rest]);         // (h, 2, d/2, …)
        using var swapped = split.transpose(1, 2);                                   // (h, d/2, 2, …)
        return swapped.reshape(shape).contiguous();                                 // (h·d, …)
    }

    /// <summary>llama.cpp's per-frequency divisors for rope_scaling "llama3": unscaled / scaled inverse frequency, (d/2) F32.</summary>
    public static Tensor Llama3RopeFactors(LlamaConfig config)
    {
        using var scaled = RotaryEmbedding.ComputeInverseFrequencies(config);
        using var unscaled = RotaryEmbedding.ComputeInverseFrequencies(config with { RopeScaling = null });
        return unscaled / scaled;
    }
}
