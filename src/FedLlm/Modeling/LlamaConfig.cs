using System.Text.Json;

namespace FedLlm.Modeling;

/// <summary>The architecture families FedLlm runs; all are the Llama decoder with small variations.</summary>
public enum ModelFamily
{
    /// <summary>Llama 2, Llama 3/3.1/3.2, SmolLM/SmolLM2, TinyLlama (model_type "llama").</summary>
    Llama,
    /// <summary>Mistral (model_type "mistral"): Llama with an optional sliding attention window.</summary>
    Mistral,
    /// <summary>Qwen2 / Qwen2.5 (model_type "qwen2"): bias on the q, k and v projections.</summary>
    Qwen2,
}

/// <summary>How rotary frequencies are rescaled for long contexts (config.json <c>rope_scaling</c>).</summary>
public sealed record RopeScaling(
    string Type,
    double Factor,
    double LowFreqFactor = 1.0,
    double HighFreqFactor = 4.0,
    int OriginalMaxPositionEmbeddings = 8192);

/// <summary>
/// The architecture of a Llama-family decoder, read from a Hugging Face <c>config.json</c>.
/// Only what rebuilds the model lives here; defaults are the Hugging Face defaults of each family,
/// so that a config.json that omits a field means what it means in transformers.
/// </summary>
public sealed record LlamaConfig
{
    /// <summary>The architecture family config.json's model_type names (llama, mistral or qwen2); it decides biases and
    /// defaults.</summary>
    public ModelFamily Family { get; init; } = ModelFamily.Llama;

    /// <summary>Tokens in the vocabulary V (rows of the embedding and the head).</summary>
    public required int VocabSize { get; init; }

    /// <summary>Width H of the residual stream.</summary>
    public required int HiddenSize { get; init; }

    /// <summary>Width of the MLP's gate and up projections.</summary>
    public required int IntermediateSize { get; init; }

    /// <summary>Decoder layers.</summary>
    public required int NumHiddenLayers { get; init; }

    /// <summary>Query heads per attention layer.</summary>
    public required int NumAttentionHeads { get; init; }

    /// <summary>Key/value heads (fewer than query heads with grouped-query attention; each serves NumAttentionHeads /
    /// this query heads).</summary>
    public required int NumKeyValueHeads { get; init; }

    /// <summary>Per-head width; Mistral-Nemo and Qwen3-style configs set it explicitly, otherwise hidden / heads.</summary>
    public required int HeadDim { get; init; }

    /// <summary>ε of every RMSNorm.</summary>
    public double RmsNormEps { get; init; } = 1e-6;

    /// <summary>RoPE base θ (10000 for Llama 2, 500000 for Llama 3).</summary>
    public double RopeTheta { get; init; } = 10000.0;

    /// <summary>RoPE frequency rescaling for long contexts (llama3, linear, dynamic …), or null for none.</summary>
    public RopeScaling? RopeScaling { get; init; }

    /// <summary>The longest context the model was trained for, in tokens.</summary>
    public int MaxPositionEmbeddings { get; init; } = 2048;

    /// <summary>True when the head reuses the embedding matrix (no lm_head.weight in the checkpoint).</summary>
    public bool TieWordEmbeddings { get; init; }

    /// <summary>Bias on q, k, v (Qwen2 always; Llama when attention_bias is set).</summary>
    public bool QkvBias { get; init; }

    /// <summary>Bias on o_proj (Llama's attention_bias covers o_proj too; Qwen2 has none there).</summary>
    public bool OutputBias { get; init; }

    /// <summary>Bias on the MLP's three projections (mlp_bias).</summary>
    public bool MlpBias { get; init; }

    /// <summary>Mistral's sliding attention window, in tokens; null means full causal attention.</summary>
    public int? SlidingWindow { get; init; }

    /// <summary>The beginning-of-sequence token id, or null when the model has none.</summary>
    public int? BosTokenId { get; init; }

    /// <summary>Token ids that end generation (config.json's eos_token_id, one or a list).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = Array.Empty<int>();

    /// <summary>The dtype the checkpoint was saved in (config.json torch_dtype), informational.</summary>
    public string? TorchDtype { get; init; }

    /// <summary>Checks the invariants that the model code relies on; throws with the offending field named.</summary>
    public void Validate(string source = "config")
    {
        void Positive(int value, string field)
        {
            if (value <= 0) throw new ModelConfigException($"{source}: '{field}' must be positive, got {value}");
        }
        Positive(VocabSize, "vocab_size");
        Positive(HiddenSize, "hidden_size");
        Positive(IntermediateSize, "intermediate_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(NumKeyValueHeads, "num_key_value_heads");
        Positive(HeadDim, "head_dim");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new ModelConfigException(
                $"{source}: num_attention_heads ({NumAttentionHeads}) must be a multiple of num_key_value_heads ({NumKeyValueHeads})");
        if (HeadDim % 2 != 0)
            throw new ModelConfigException(
                $"{source}: the attention head size must be even for rotary embeddings, got {HeadDim} " +
                $"(head_dim, or hidden_size {HiddenSize} / num_attention_heads {NumAttentionHeads} when head_dim is not set)");
        if (RmsNormEps <= 0) throw new ModelConfigException($"{source}: 'rms_norm_eps' must be positive");
        if (RopeTheta <= 0) throw new ModelConfigException($"{source}: 'rope_theta' must be positive");
    }

    /// <summary>Reads a Hugging Face config.json.</summary>
    public static LlamaConfig Load(string path)
    {
        if (!File.Exists(path)) throw new ModelConfigException($"{path}: file not found");
        string text = File.ReadAllText(path);
        try
        {
            using var document = JsonDocument.Parse(text);
            return FromJson(document.RootElement, path);
        }
        catch (JsonException e)
        {
            throw new ModelConfigException($"{path}: malformed JSON: {e.Message}", e);
        }
    }

    /// <summary>Builds a config from the root object of a config.json; <paramref name="source"/> names it in errors.</summary>
    public static LlamaConfig FromJson(JsonElement root, string source)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new ModelConfigException($"{source}: expected a JSON object");
        var reader = new JsonFieldReader(root, source);
        string modelType = reader.RequiredString("model_type");
        ModelFamily family = modelType switch
        {
            "llama" => ModelFamily.Llama,
            "mistral" => ModelFamily.Mistral,
            "qwen2" => ModelFamily.Qwen2,
            _ => throw new ModelConfigException(
                $"{source}: unsupported model_type '{modelType}'; FedLlm runs 'llama' (Llama 2/3, SmolLM, TinyLlama), 'mistral' and 'qwen2'"),
        };
        string activation = reader.OptionalString("hidden_act") ?? "silu";
        if (activation != "silu")
            throw new ModelConfigException($"{source}: 'hidden_act' is '{activation}'; only 'silu' (SwiGLU) is supported");

        int hidden = reader.RequiredInt("hidden_size");
        int heads = reader.RequiredInt("num_attention_heads");
        if (heads <= 0) throw new ModelConfigException($"{source}: 'num_attention_heads' must be positive, got {heads}");
        bool attentionBias = reader.OptionalBool("attention_bias") ?? false;

        // transformers v5 moves rope_theta and rope_scaling into "rope_parameters"; accept both layouts.
        JsonElement? ropeParameters = reader.OptionalObject("rope_parameters");
        double ropeTheta = reader.OptionalDouble("rope_theta")
            ?? (ropeParameters is { } rp && rp.TryGetProperty("rope_theta", out var t) && t.ValueKind == JsonValueKind.Number ? t.GetDouble() : (double?)null)
            ?? 10000.0;
        RopeScaling? scaling = ReadRopeScaling(reader.OptionalObject("rope_scaling") ?? ropeParameters, source);

        int? slidingWindow = family switch
        {
            ModelFamily.Mistral => reader.OptionalInt("sliding_window"),
            // Qwen2 configs carry sliding_window but only use it when use_sliding_window is true.
            ModelFamily.Qwen2 => (reader.OptionalBool("use_sliding_window") ?? false) ? reader.OptionalInt("sliding_window") : null,
            _ => null,
        };

        var config = new LlamaConfig
        {
            Family = family,
            VocabSize = reader.RequiredInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = reader.RequiredInt("intermediate_size"),
            NumHiddenLayers = reader.RequiredInt("num_hidden_layers"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = reader.OptionalInt("num_key_value_heads") ?? heads,
            HeadDim = reader.OptionalInt("head_dim") ?? hidden / heads,
            RmsNormEps = reader.OptionalDouble("rms_norm_eps") ?? 1e-6,
            RopeTheta = ropeTheta,
            RopeScaling = scaling,
            MaxPositionEmbeddings = reader.OptionalInt("max_position_embeddings") ?? (family == ModelFamily.Qwen2 ? 32768 : 2048),
            TieWordEmbeddings = reader.OptionalBool("tie_word_embeddings") ?? false,
            QkvBias = family == ModelFamily.Qwen2 || attentionBias,
            OutputBias = family != ModelFamily.Qwen2 && attentionBias,
            MlpBias = reader.OptionalBool("mlp_bias") ?? false,
            SlidingWindow = slidingWindow,
            BosTokenId = reader.OptionalInt("bos_token_id"),
            EosTokenIds = reader.OptionalIntOrList("eos_token_id"),
            TorchDtype = reader.OptionalString("torch_dtype") ?? reader.OptionalString("dtype"),
        };
        config.Validate(source);
        return config;
    }

    static RopeScaling? ReadRopeScaling(JsonElement? element, string source)
    {
        if (element is not { } scaling) return null;
        var reader = new JsonFieldReader(scaling, source + ": rope_scaling");
        string? type = reader.OptionalString("rope_type") ?? reader.OptionalString("type");
        if (type is null or "default") return null;
        double factor = reader.OptionalDouble("factor") ?? throw new ModelConfigException($"{source}: rope_scaling: missing required field 'factor'");
        return type switch
        {
            "llama3" => new RopeScaling(type, factor,
                reader.OptionalDouble("low_freq_factor") ?? 1.0,
                reader.OptionalDouble("high_freq_factor") ?? 4.0,
                reader.OptionalInt("original_max_position_embeddings") ?? 8192),
            "linear" => new RopeScaling(type, factor),
            _ => throw new ModelConfigException(
                $"{source}: rope_scaling type '{type}' is not supported (supported: llama3, linear)"),
        };
    }

    /// <summary>Writes the config as a Hugging Face config.json, so that saved checkpoints load in transformers.</summary>
    public void Save(string path)
    {
        string modelType = Family switch { ModelFamily.Mistral => "mistral", ModelFamily.Qwen2 => "qwen2", _ => "llama" };
        string architecture = Family switch { ModelFamily.Mistral => "MistralForCausalLM", ModelFamily.Qwen2 => "Qwen2ForCausalLM", _ => "LlamaForCausalLM" };
        var json = new Dictionary<string, object?>
        {
            ["architectures"] = new[] { architecture },
            ["model_type"] = modelType,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenIds.Count == 1 ? EosTokenIds[0] : EosTokenIds.Count == 0 ? null : EosTokenIds,
            ["torch_dtype"] = TorchDtype ?? "float32",
        };
        if (Family == ModelFamily.Llama)
        {
            json["attention_bias"] = QkvBias;
            json["mlp_bias"] = MlpBias;
        }
        if (Family == ModelFamily.Mistral) json["sliding_window"] = SlidingWindow;
        if (Family == ModelFamily.Qwen2)
        {
            json["use_sliding_window"] = SlidingWindow is not null;
            json["sliding_window"] = SlidingWindow;
        }
        if (RopeScaling is { } s)
        {
            json["rope_scaling"] = s.Type == "llama3"
                ? new Dictionary<string, object> { ["rope_type"] = s.Type, ["factor"] = s.Factor, ["low_freq_factor"] = s.LowFreqFactor, ["high_freq_factor"] = s.HighFreqFactor, ["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings }
                : new Dictionary<string, object> { ["rope_type"] = s.Type, ["factor"] = s.Factor };
        }
        Io.AtomicFile.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
    }
}

/// <summary>A config.json that FedLlm cannot use: the message names the file and the field.</summary>
public sealed class ModelConfigException : Exception
{
    /// <summary>A config error described by <paramref name="message"/>, which names the file and field.</summary>
    public ModelConfigException(string message) : base(message) { }

    /// <summary>A config error described by <paramref name="message"/>, caused by <paramref name="inner"/> (a JSON
    /// parse error).</summary>
    public ModelConfigException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>Typed access to JSON fields with errors that name the source and the field.</summary>
internal readonly struct JsonFieldReader(JsonElement root, string source)
{
    JsonElement? Get(string field) =>
        root.TryGetProperty(field, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    Exception WrongType(string field, string expected, JsonElement value) =>
        new ModelConfigException($"{source}: field '{field}' must be {expected}, got {value.ValueKind} {value.GetRawText()}");

    public string RequiredString(string field) =>
        OptionalString(field) ?? throw new ModelConfigException($"{source}: missing required field '{field}'");

    public int RequiredInt(string field) =>
        OptionalInt(field) ?? throw new ModelConfigException($"{source}: missing required field '{field}'");

    public string? OptionalString(string field) => Get(field) switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } v => v.GetString(),
        { } v => throw WrongType(field, "a string", v),
    };

    public int? OptionalInt(string field) => Get(field) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Number } v when v.TryGetInt32(out int i) => i,
        { } v => throw WrongType(field, "an integer", v),
    };

    public double? OptionalDouble(string field) => Get(field) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Number } v => v.GetDouble(),
        { } v => throw WrongType(field, "a number", v),
    };

    public bool? OptionalBool(string field) => Get(field) switch
    {
        null => null,
        { ValueKind: JsonValueKind.True } => true,
        { ValueKind: JsonValueKind.False } => false,
        { } v => throw WrongType(field, "true or false", v),
    };

    public JsonElement? OptionalObject(string field) => Get(field) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Object } v => v,
        { } v => throw WrongType(field, "an object", v),
    };

    public IReadOnlyList<int> OptionalIntOrList(string field) => Get(field) switch
    {
        null => Array.Empty<int>(),
        { ValueKind: JsonValueKind.Number } v when v.TryGetInt32(out int i) => new[] { i },
        { ValueKind: JsonValueKind.Array } v when v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number) =>
            v.EnumerateArray().Select(e => e.GetInt32()).ToArray(),
        { } v => throw WrongType(field, "an integer or a list of integers", v),
    };
}
