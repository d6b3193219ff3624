using System.Text.Json;
using System.Text.Json.Nodes;

namespace FedLlm.Tokenization;

/// <summary>An added token as tokenizer.json and tokenizer_config.json's <c>added_tokens_decoder</c> write it.</summary>
internal sealed record AddedTokenSpec(
    int Id, string Content, bool Special, bool LStrip = false, bool RStrip = false, bool SingleWord = false, bool Normalized = false)
{
    public JsonObject ToJson() => new()
    {
        ["id"] = Id,
        ["content"] = Content,
        ["single_word"] = SingleWord,
        ["lstrip"] = LStrip,
        ["rstrip"] = RStrip,
        ["normalized"] = Normalized,
        ["special"] = Special,
    };

    public static AddedTokenSpec FromJson(JsonObject o, int id) => new(
        id,
        o["content"]?.GetValue<string>() ?? throw new JsonException("an added token has no \"content\""),
        Flag(o, "special"),
        Flag(o, "lstrip"),
        Flag(o, "rstrip"),
        Flag(o, "single_word"),
        // The Rust library's default: tokens that are not special are matched on normalized text.
        o["normalized"] is JsonNode n ? n.GetValue<bool>() : !Flag(o, "special"));

    private static bool Flag(JsonObject o, string name) => o[name] is JsonNode n && n.GetValue<bool>();
}

/// <summary>
/// What transformers reads besides tokenizer.json / tokenizer.model: tokenizer_config.json, special_tokens_map.json,
/// chat_template.jinja and generation_config.json's <c>eos_token_id</c>.
/// </summary>
internal sealed class TokenizerConfig
{
    public const string ConfigFile = "tokenizer_config.json";
    public const string SpecialTokensMapFile = "special_tokens_map.json";
    public const string ChatTemplateFile = "chat_template.jinja";
    public const string GenerationConfigFile = "generation_config.json";

    private static readonly string[] NamedTokenKeys = ["bos_token", "eos_token", "unk_token", "pad_token"];

    // Only keys that a file sets: a key set to null ("bos_token": null) means "no such token", which differs
    // from a missing key, where a tokenizer class's default applies (LlamaTokenizer: <s>, </s>, <unk>).
    private readonly Dictionary<string, string?> _namedTokens = new(StringComparer.Ordinal);

    /// <summary>tokenizer_class without the "Fast" suffix, e.g. "LlamaTokenizer", "PreTrainedTokenizer".</summary>
    public string? TokenizerClass { get; private set; }

    public bool? AddBosToken { get; private set; }
    public bool? AddEosToken { get; private set; }
    public bool? Legacy { get; private set; }
    public bool? AddPrefixSpace { get; private set; }
    public bool CleanUpTokenizationSpaces { get; private set; }
    public string? ChatTemplate { get; private set; }
    public IReadOnlyList<AddedTokenSpec> AddedTokensDecoder { get; private set; } = [];
    public IReadOnlyList<string> AdditionalSpecialTokens { get; private set; } = [];
    public IReadOnlyList<int> GenerationEosTokenIds { get; private set; } = [];

    /// <summary>
    /// True for the classes whose constructor rebuilds the post-processor from add_bos_token (default true) and
    /// add_eos_token (default false), whatever tokenizer.json says: transformers' LlamaTokenizerFast.update_post_processor.
    /// </summary>
    public bool IsLlamaClass => TokenizerClass is "LlamaTokenizer" or "CodeLlamaTokenizer";

    /// <summary>The token a key names, if a file sets the key (its value may be null).</summary>
    public bool TryGetNamedToken(string key, out string? content) => _namedTokens.TryGetValue(key, out content);

    /// <summary>Sets a named token only where no file set the key (a tokenizer class's default).</summary>
    public void SetDefaultNamedToken(string key, string content) => _namedTokens.TryAdd(key, content);

    public string? NamedToken(string key) => _namedTokens.GetValueOrDefault(key);

    /// <summary>bos/eos/unk/pad and additional_special_tokens: transformers registers all of them as special.</summary>
    public IEnumerable<string> SpecialTokenContents() =>
        NamedTokenKeys.Select(NamedToken).OfType<string>().Concat(AdditionalSpecialTokens);

    public static TokenizerConfig Load(string directory)
    {
        var config = new TokenizerConfig();
        var configJson = ReadObject(directory, ConfigFile);
        if (configJson is not null)
        {
            config.ReadTokenizerConfig(configJson, Path.Combine(directory, ConfigFile));
        }

        // transformers (4.x) lets special_tokens_map.json override tokenizer_config.json only for configs written
        // before added_tokens_decoder existed; newer configs always carry their own tokens, so there it only fills gaps.
        var mapJson = ReadObject(directory, SpecialTokensMapFile);
        if (mapJson is not null)
        {
            bool legacyConfig = configJson?["added_tokens_decoder"] is null;
            config.ReadSpecialTokensMap(mapJson, overrideConfig: legacyConfig, Path.Combine(directory, SpecialTokensMapFile));
        }

        // transformers gives a separate chat_template.jinja priority over the config's entry.
        string templatePath = Path.Combine(directory, ChatTemplateFile);
        if (File.Exists(templatePath))
        {
            config.ChatTemplate = File.ReadAllText(templatePath);
        }

        var generation = ReadObject(directory, GenerationConfigFile);
        if (generation is not null)
        {
            config.GenerationEosTokenIds = Wrap(Path.Combine(directory, GenerationConfigFile), () => generation["eos_token_id"] switch
            {
                null => [],
                JsonArray ids => ids.Select(id => id!.GetValue<int>()).ToArray(),
                JsonNode id => [id.GetValue<int>()],
            });
        }

        return config;
    }

    private void ReadTokenizerConfig(JsonObject json, string path) => Wrap(path, () =>
    {
        foreach (string key in NamedTokenKeys)
        {
            if (json.ContainsKey(key))
            {
                _namedTokens[key] = TokenContent(json[key]);
            }
        }

        string? tokenizerClass = json["tokenizer_class"]?.GetValue<string>();
        TokenizerClass = tokenizerClass is not null && tokenizerClass.EndsWith("Fast", StringComparison.Ordinal)
            ? tokenizerClass[..^"Fast".Length]
            : tokenizerClass;
        AddBosToken = OptionalBool(json, "add_bos_token");
        AddEosToken = OptionalBool(json, "add_eos_token");
        Legacy = OptionalBool(json, "legacy");
        AddPrefixSpace = OptionalBool(json, "add_prefix_space");
        // transformers' current default; Llama 3's config sets it to true explicitly.
        CleanUpTokenizationSpaces = OptionalBool(json, "clean_up_tokenization_spaces") ?? false;
        ChatTemplate = ReadChatTemplate(json["chat_template"]);
        AdditionalSpecialTokens = TokenList(json["additional_special_tokens"]);

        if (json["added_tokens_decoder"] is JsonObject decoder)
        {
            AddedTokensDecoder = decoder
                .Select(kv => AddedTokenSpec.FromJson(kv.Value!.AsObject(), int.Parse(kv.Key, System.Globalization.CultureInfo.InvariantCulture)))
                .OrderBy(t => t.Id)
                .ToArray();
        }
    });

    private void ReadSpecialTokensMap(JsonObject json, bool overrideConfig, string path) => Wrap(path, () =>
    {
        foreach (string key in NamedTokenKeys)
        {
            if (json.ContainsKey(key) && (overrideConfig || !_namedTokens.ContainsKey(key)))
            {
                _namedTokens[key] = TokenContent(json[key]);
            }
        }

        if (json.ContainsKey("additional_special_tokens") && (overrideConfig || AdditionalSpecialTokens.Count == 0))
        {
            AdditionalSpecialTokens = AdditionalSpecialTokens.Union(TokenList(json["additional_special_tokens"])).ToArray();
        }
    });

    /// <summary>A chat template is a string, or (older multi-template configs) a list of {name, template}: take "default".</summary>
    private static string? ReadChatTemplate(JsonNode? node) => node switch
    {
        null => null,
        JsonArray list => list
            .Select(t => t!.AsObject())
            .FirstOrDefault(t => t["name"]?.GetValue<string>() == "default")?["template"]?.GetValue<string>(),
        JsonNode text => text.GetValue<string>(),
    };

    /// <summary>A token is written as a string or as an AddedToken object {"content": ..., "lstrip": ...}.</summary>
    private static string? TokenContent(JsonNode? node) => node switch
    {
        null => null,
        JsonObject o => o["content"]?.GetValue<string>(),
        JsonNode text => text.GetValue<string>(),
    };

    private static string[] TokenList(JsonNode? node) =>
        node is JsonArray list ? list.Select(TokenContent).OfType<string>().ToArray() : [];

    private static bool? OptionalBool(JsonObject json, string key) =>
        json[key] is JsonNode n ? n.GetValue<bool>() : null;

    private static JsonObject? ReadObject(string directory, string fileName)
    {
        string path = Path.Combine(directory, fileName);
        if (!File.Exists(path))
        {
            return null;
        }

        return Wrap(path, () => JsonNode.Parse(File.ReadAllText(path))?.AsObject()
            ?? throw new JsonException("the file holds JSON null"));
    }

    /// <summary>Runs a read and turns JSON and type errors into one exception that names the file.</summary>
    internal static void Wrap(string path, Action read) => Wrap(path, () =>
    {
        read();
        return 0;
    });

    /// <summary>Runs a read and turns JSON and type errors into one exception that names the file.</summary>
    internal static T Wrap<T>(string path, Func<T> read)
    {
        try
        {
            return read();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or OverflowException)
        {
            throw new TokenizerException($"Cannot read '{path}': {e.Message}", e);
        }
    }
}
