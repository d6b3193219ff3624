using System.Text.Json;
using System.Text.Json.Nodes;
using FedLlm.Checkpoints;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Quantization;
using static TorchSharp.torch;

namespace FedLlm.Export;

/// <summary>What <see cref="MergedCheckpointWriter.Write"/> produces.</summary>
public sealed record MergeOptions
{
    /// <summary>The dtype of the written weights; the merge itself is always computed in float32.</summary>
    public ScalarType Dtype { get; init; } = ScalarType.Float32;

    /// <summary>Largest shard in bytes of tensor data; above it the weights are sharded with an index (save_pretrained's rule).</summary>
    public long MaxShardBytes { get; init; } = 5L << 30;

    /// <summary>
    /// How the user asked for the base to be held (<c>--base-dtype</c>). fp32 and bf16 both merge over a float32 load;
    /// int8 and NF4 are refused, as <see cref="LoraLinear.Merge"/> refuses quantised layers.
    /// </summary>
    public BasePrecision BasePrecision { get; init; } = BasePrecision.Fp32;

    /// <summary>Checks that the merge is possible.</summary>
    /// <exception cref="NotSupportedException">The base is int8 or NF4 (a merge would re-quantise it).</exception>
    /// <exception cref="ArgumentException">The output dtype is not float32, bfloat16 or float16.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The shard size is not positive.</exception>
    public void Validate()
    {
        if (BasePrecision is BasePrecision.Int8 or BasePrecision.Nf4)
            throw new NotSupportedException(
                $"cannot merge into a {BasePrecision.Name()} base: the merged weight would have to be re-quantised (lossy). " +
                "Merge with --base-dtype fp32 or bf16; quantise the merged checkpoint afterwards if you need to");
        if (Dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"merged checkpoints are written in float32, bfloat16 or float16, not {Dtype}");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxShardBytes);
    }

    /// <summary>Parses the CLI spelling: fp32, bf16 or fp16 (and their torch names).</summary>
    public static ScalarType ParseDtype(string text) => text.ToLowerInvariant() switch
    {
        "fp32" or "float32" or "f32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "fp16" or "float16" or "f16" => ScalarType.Float16,
        _ => throw new ArgumentException($"--dtype '{text}' is not one of fp32, bf16, fp16"),
    };

    /// <summary>The config.json spelling of a dtype (torch_dtype).</summary>
    public static string TorchDtypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => "float32",
    };
}

/// <summary>
/// Folds a PEFT LoRA adapter into its base model and writes the result as a plain Hugging Face checkpoint folder
/// (PEFT's merge_and_unload followed by save_pretrained): weights, config.json, generation_config.json and the
/// tokenizer files, so the folder loads in transformers, in FedLlm, and in converters such as llama.cpp's.
/// </summary>
public static class MergedCheckpointWriter
{
    /// <summary>Files a tokenizer may consist of; whichever of them the base folder has are copied unchanged.</summary>
    public static IReadOnlyList<string> TokenizerFiles { get; } =
    [
        "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
        "chat_template.jinja", "vocab.json", "merges.txt",
    ];

    /// <summary>Merges <paramref name="adapterDirectory"/> (or nothing, to re-save in another dtype) into the base.</summary>
    /// <remarks>
    /// The base is loaded in float32 whatever it was saved in, so ΔW = B·A·scaling is added at full precision and
    /// rounded once, when the sum is cast to <see cref="MergeOptions.Dtype"/>. A quantised base (a config.json with
    /// quantization_config) is refused: its weights are not the ones the adapter was trained against once dequantised
    /// and re-rounded, which is the same reason <see cref="LoraLinear.Merge"/> refuses int8/NF4 layers.
    /// </remarks>
    public static void Write(string baseDirectory, string? adapterDirectory, string outputDirectory, MergeOptions options)
    {
        options.Validate();
        string configPath = Path.Combine(baseDirectory, "config.json");
        var configJson = ReadConfigJson(configPath);
        if (configJson["quantization_config"] is not null)
            throw new NotSupportedException(
                $"{configPath}: the base is a quantised checkpoint (quantization_config); merging into int8/NF4 weights would " +
                "re-quantise the sum (lossy). Merge into the full-precision base instead");
        if (Path.GetFullPath(baseDirectory) == Path.GetFullPath(outputDirectory))
            throw new ArgumentException("the output folder must differ from the base folder (its files would be overwritten while read)");

        using var model = ModelLoader.Load(baseDirectory, BaseWeights.Fp32);
        if (adapterDirectory is not null)
        {
            AdapterIO.Load(adapterDirectory, model);
            LoraInjector.MergeAll(model);
        }
        Directory.CreateDirectory(outputDirectory);
        WriteWeights(model, outputDirectory, options);

        configJson["torch_dtype"] = MergeOptions.TorchDtypeName(options.Dtype);
        Io.AtomicFile.WriteAllText(Path.Combine(outputDirectory, "config.json"), configJson.ToJsonString(Indented));
        WriteGenerationConfig(baseDirectory, outputDirectory, model.Config);
        foreach (var name in TokenizerFiles)
        {
            string source = Path.Combine(baseDirectory, name);
            if (File.Exists(source)) File.Copy(source, Path.Combine(outputDirectory, name), overwrite: true);
        }
    }

    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>
    /// Base weights only (an adapter's lora_A/B and the base_layer indirection are not part of a plain checkpoint),
    /// each cast to the target dtype just before it is written.
    /// </summary>
    static void WriteWeights(LlamaForCausalLM model, string outputDirectory, MergeOptions options)
    {
        var cast = new List<Tensor>();
        try
        {
            var tensors = new List<KeyValuePair<string, Tensor>>();
            foreach (var (name, parameter) in model.named_parameters())
            {
                if (name.Contains(".lora_", StringComparison.Ordinal)) continue;
                Tensor stored = parameter;
                if (parameter.dtype != options.Dtype)
                {
                    stored = parameter.detach().to(options.Dtype);
                    cast.Add(stored);
                }
                tensors.Add(new(name.Replace(".base_layer.", ".", StringComparison.Ordinal), stored));
            }
            CheckpointWriter.Write(outputDirectory, tensors, options.MaxShardBytes);
        }
        finally
        {
            foreach (var t in cast) t.Dispose();
        }
    }

    /// <summary>The base's generation_config.json if it has one; else the one save_pretrained derives from config.json.</summary>
    static void WriteGenerationConfig(string baseDirectory, string outputDirectory, LlamaConfig config)
    {
        string source = Path.Combine(baseDirectory, "generation_config.json");
        string target = Path.Combine(outputDirectory, "generation_config.json");
        if (File.Exists(source))
        {
            File.Copy(source, target, overwrite: true);
            return;
        }
        var json = new JsonObject { ["_from_model_config"] = true };
        if (config.BosTokenId is { } bos) json["bos_token_id"] = bos;
        if (config.EosTokenIds.Count == 1) json["eos_token_id"] = config.EosTokenIds[0];
        else if (config.EosTokenIds.Count > 1) json["eos_token_id"] = new JsonArray(config.EosTokenIds.Select(i => (JsonNode?)i).ToArray());
        Io.AtomicFile.WriteAllText(target, json.ToJsonString(Indented));
    }

    static JsonObject ReadConfigJson(string path)
    {
        if (!File.Exists(path)) throw new ModelConfigException($"{path}: file not found");
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new ModelConfigException($"{path}: expected a JSON object");
        }
        catch (JsonException e)
        {
            throw new ModelConfigException($"{path}: malformed JSON: {e.Message}", e);
        }
    }
}
