using System.Text.Json;
using System.Text.Json.Nodes;
using FedLlm.Checkpoints;
using FedLlm.Modeling;
using static TorchSharp.torch;

namespace FedLlm.Peft;

/// <summary>
/// Saves and loads LoRA adapters in PEFT's format: <c>adapter_config.json</c> + <c>adapter_model.safetensors</c> with keys
/// such as <c>base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight</c>, so adapters move freely between
/// FedLlm and the Hugging Face ecosystem.
/// </summary>
public static class AdapterIO
{
    /// <summary>PEFT's adapter configuration file name.</summary>
    public const string ConfigFileName = "adapter_config.json";

    /// <summary>PEFT's adapter weights file name.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>The prefix of every PEFT key on disk ("base_model.model.").</summary>
    public const string KeyPrefix = AdapterKeys.Prefix;

    /// <summary>The adapter weights keyed by their PEFT file names (views of the live parameters, not copies).</summary>
    public static IReadOnlyDictionary<string, Tensor> State(LlamaForCausalLM model)
    {
        var state = new SortedDictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, parameter) in AdapterKeys.Parameters(model)) state[key] = parameter;
        return state;
    }

    /// <summary>Writes the model's adapters and their config into <paramref name="directory"/> (each file atomically).</summary>
    public static void Save(string directory, LlamaForCausalLM model, LoraOptions options, string? baseModelNameOrPath = null) =>
        Save(directory, State(model), options, baseModelNameOrPath);

    /// <summary>Writes PEFT-keyed adapter tensors (e.g. a federated global adapter) and their config.</summary>
    public static void Save(string directory, IReadOnlyDictionary<string, Tensor> state, LoraOptions options, string? baseModelNameOrPath = null)
    {
        if (state.Count == 0) throw new InvalidOperationException("no LoRA adapter tensors to save");
        string weightsPath = Path.Combine(directory, WeightsFileName);
        // A diverged adapter must never reach disk, where resume, federation or PEFT would pick it up as a good one.
        foreach (var (key, tensor) in state) FiniteTensors.Require(tensor, key, weightsPath, "write");
        Directory.CreateDirectory(directory);
        SafeTensorsWriter.Write(weightsPath, state.OrderBy(kv => kv.Key, StringComparer.Ordinal),
            new Dictionary<string, string> { ["format"] = "pt" });
        // The module names that carry adapters, from keys like "...self_attn.q_proj.lora_A.weight".
        var targets = state.Keys.Select(k => k.Split('.')).Where(p => p.Length >= 3).Select(p => p[^3]).Distinct().OrderBy(t => t, StringComparer.Ordinal);
        var config = new JsonObject
        {
            ["alpha_pattern"] = new JsonObject(),
            ["auto_mapping"] = null,
            ["base_model_name_or_path"] = baseModelNameOrPath,
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["layers_pattern"] = null,
            ["layers_to_transform"] = null,
            ["lora_alpha"] = options.Alpha,
            ["lora_dropout"] = options.Dropout,
            ["modules_to_save"] = null,
            ["peft_type"] = "LORA",
            ["r"] = options.Rank,
            ["rank_pattern"] = new JsonObject(),
            ["revision"] = null,
            ["target_modules"] = new JsonArray(targets.Select(t => (JsonNode?)JsonValue.Create(t)).ToArray()),
            ["task_type"] = "CAUSAL_LM",
            ["use_rslora"] = options.UseRsLora,
        };
        Io.AtomicFile.WriteAllText(Path.Combine(directory, ConfigFileName), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Reads adapter_config.json into LoRA options (target modules, r, alpha, dropout, rsLoRA).</summary>
    public static LoraOptions ReadOptions(string directory)
    {
        string path = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(path)) throw new AdapterException($"{directory}: no {ConfigFileName}; is this a PEFT adapter folder?");
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new AdapterException($"{path}: malformed JSON: {e.Message}", e); }
        if (root is not JsonObject o) throw new AdapterException($"{path}: expected a JSON object");
        string peftType = o["peft_type"]?.GetValue<string>() ?? "LORA";
        if (peftType != "LORA") throw new AdapterException($"{path}: peft_type '{peftType}' is not supported (only LORA)");
        if (o["use_dora"]?.GetValue<bool>() == true) throw new AdapterException($"{path}: DoRA adapters are not supported");
        if (o["modules_to_save"] is JsonArray { Count: > 0 }) throw new AdapterException($"{path}: modules_to_save is not supported");
        if (o["bias"]?.GetValue<string>() is { } bias && bias != "none") throw new AdapterException($"{path}: bias '{bias}' is not supported (only 'none')");
        try
        {
            var targets = o["target_modules"] switch
            {
                JsonArray array => array.Select(n => n!.GetValue<string>()).ToList(),
                JsonValue value => throw new AdapterException($"{path}: target_modules as a regular expression ('{value}') is not supported; list the module names"),
                _ => throw new AdapterException($"{path}: missing field 'target_modules'"),
            };
            var options = new LoraOptions
            {
                Rank = o["r"]?.GetValue<int>() ?? throw new AdapterException($"{path}: missing field 'r'"),
                Alpha = o["lora_alpha"]?.GetValue<double>() ?? throw new AdapterException($"{path}: missing field 'lora_alpha'"),
                Dropout = o["lora_dropout"]?.GetValue<double>() ?? 0.0,
                UseRsLora = o["use_rslora"]?.GetValue<bool>() ?? false,
                TargetModules = targets,
            };
            options.Validate();
            return options;
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException)
        {
            throw new AdapterException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>
    /// Loads a PEFT adapter folder into the model: injects adapters as its config says (if the model has none yet) and
    /// copies every weight. Every expected key must be present with the right shape, and no unexpected key may remain.
    /// </summary>
    public static LoraOptions Load(string directory, LlamaForCausalLM model)
    {
        var options = ReadOptions(directory);
        if (LoraInjector.Sites(model).Count == 0) LoraInjector.Inject(model, options);
        string weightsPath = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(weightsPath))
            throw new AdapterException($"{directory}: no {WeightsFileName} (adapter_model.bin pickles are not supported)");
        using var file = SafeTensorsFile.Open(weightsPath);
        var expected = State(model);
        // Some PEFT versions keep the adapter name in the key ("lora_A.default.weight"); accept that spelling too.
        var onDisk = file.Tensors.Keys.ToDictionary(k => k.Replace(".lora_A.default.", ".lora_A.").Replace(".lora_B.default.", ".lora_B."), k => k);
        var missing = expected.Keys.Where(k => !onDisk.ContainsKey(k)).ToList();
        if (missing.Count > 0)
            throw new AdapterException($"{weightsPath}: missing {missing.Count} adapter tensor(s), e.g. '{missing[0]}'");
        var unexpected = onDisk.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        if (unexpected.Count > 0)
            throw new AdapterException($"{weightsPath}: {unexpected.Count} tensor(s) this model has no place for, e.g. '{unexpected[0]}' (target modules or layer count differ?)");
        using var noGrad = no_grad();
        // Checked before any weight is copied, so a refused file leaves the model's adapters as they were.
        foreach (var key in expected.Keys)
        {
            using var scope = NewDisposeScope();
            FiniteTensors.Require(file.Read(onDisk[key]), onDisk[key], weightsPath, "load");
        }
        foreach (var (key, parameter) in expected) file.ReadInto(onDisk[key], parameter);
        return options;
    }
}

/// <summary>An adapter folder FedLlm cannot use; the message names the file and what is wrong.</summary>
public sealed class AdapterException : Exception
{
    /// <summary>An adapter error described by <paramref name="message"/>, which names the file.</summary>
    public AdapterException(string message) : base(message) { }

    /// <summary>An adapter error described by <paramref name="message"/>, caused by <paramref name="inner"/>.</summary>
    public AdapterException(string message, Exception inner) : base(message, inner) { }
}
