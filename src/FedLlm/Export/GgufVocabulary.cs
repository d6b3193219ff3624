using System.Text.Json.Nodes;
using FedLlm.Tokenization;

namespace FedLlm.Export;

/// <summary>llama.cpp's token types (llama_token_type / gguf-py TokenType).</summary>
public enum GgufTokenType
{
    /// <summary>An ordinary token.</summary>
    Normal = 1,

    /// <summary>The unknown token.</summary>
    Unknown = 2,

    /// <summary>A special token (BOS, EOS, chat-template markers).</summary>
    Control = 3,

    /// <summary>A token added to the vocabulary by the user (tokenizer.json added_tokens that are not
    /// special).</summary>
    UserDefined = 4,

    /// <summary>A reserved, unused slot.</summary>
    Unused = 5,

    /// <summary>A SentencePiece byte-fallback token (&lt;0xNN&gt;).</summary>
    Byte = 6,
}

/// <summary>
/// A model folder's tokenizer as GGUF metadata (<c>tokenizer.ggml.*</c>), read from the same files the reference
/// converter reads: byte-level BPE tokenizer.json becomes model "gpt2" (tokens, types, merges, pre-tokenizer name);
/// a SentencePiece tokenizer.model becomes model "llama" (pieces, scores, types).
/// </summary>
public sealed record GgufVocabulary
{
    /// <summary>"gpt2" (byte-level BPE) or "llama" (SentencePiece).</summary>
    public required string Model { get; init; }

    /// <summary>llama.cpp's name for the pre-tokenizer regex ("llama-bpe", "gpt-2", "qwen2"); null for SentencePiece.</summary>
    public string? PreTokenizer { get; init; }

    /// <summary>The tokens, by id (tokenizer.ggml.tokens).</summary>
    public required IReadOnlyList<string> Tokens { get; init; }

    /// <summary>Each token's <see cref="GgufTokenType"/> as an integer, by id.</summary>
    public required IReadOnlyList<int> TokenTypes { get; init; }

    /// <summary>SentencePiece scores by id; null for BPE.</summary>
    public IReadOnlyList<float>? Scores { get; init; }

    /// <summary>BPE merges as "left right", in priority order; null for SentencePiece.</summary>
    public IReadOnlyList<string>? Merges { get; init; }

    /// <summary>The beginning-of-sequence token id, or null.</summary>
    public int? BosId { get; init; }

    /// <summary>The end-of-sequence token id, or null.</summary>
    public int? EosId { get; init; }

    /// <summary>The padding token id, or null.</summary>
    public int? PadId { get; init; }

    /// <summary>The unknown token id, or null.</summary>
    public int? UnkId { get; init; }

    /// <summary>Whether the tokenizer adds BOS when encoding; null = not said.</summary>
    public bool? AddBos { get; init; }

    /// <summary>Whether the tokenizer adds EOS when encoding; null = not said.</summary>
    public bool? AddEos { get; init; }

    /// <summary>The Jinja chat template of tokenizer_config.json, or null.</summary>
    public string? ChatTemplate { get; init; }

    /// <summary>The Llama 3 split regex (tokenizers' Split pre-tokenizer), which llama.cpp calls "llama-bpe".</summary>
    const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Qwen2's, the Llama 3 regex with single digits.</summary>
    const string Qwen2Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Reads the tokenizer of <paramref name="directory"/>, padded with unused tokens up to <paramref name="vocabSize"/>.</summary>
    /// <exception cref="NotSupportedException">A tokenizer llama.cpp would tokenize differently than it is written.</exception>
    public static GgufVocabulary Read(string directory, int vocabSize)
    {
        var config = TokenizerConfig.Load(directory);
        string jsonPath = Path.Combine(directory, TokenizerLoader.TokenizerJsonFile);
        string modelPath = Path.Combine(directory, TokenizerLoader.SentencePieceModelFile);
        var vocabulary = File.Exists(modelPath) && (config.IsLlamaClass || !File.Exists(jsonPath))
            ? FromSentencePiece(modelPath, config, vocabSize)
            : File.Exists(jsonPath)
                ? FromByteLevelBpe(jsonPath, config, vocabSize)
                : throw new NotSupportedException($"{directory}: no tokenizer.json or tokenizer.model to put into the GGUF file");
        return vocabulary with { ChatTemplate = config.ChatTemplate };
    }

    static GgufVocabulary FromByteLevelBpe(string path, TokenizerConfig config, int vocabSize)
    {
        var json = TokenizerConfig.Wrap(path, () => JsonNode.Parse(File.ReadAllText(path))!.AsObject());
        var model = json["model"]?.AsObject() ?? throw new NotSupportedException($"{path}: no \"model\"");
        if (model["type"]?.GetValue<string>() != "BPE" || !UsesByteLevel(json["pre_tokenizer"]))
            throw new NotSupportedException(
                $"{path}: only byte-level BPE tokenizer.json files (GPT-2, Llama 3, SmolLM) can be exported here; " +
                "a SentencePiece model needs its tokenizer.model");

        var tokens = new string?[vocabSize];
        var types = new int[vocabSize];
        foreach (var (token, id) in model["vocab"]!.AsObject())
        {
            int i = id!.GetValue<int>();
            if (i >= vocabSize) throw new NotSupportedException($"{path}: token id {i} is outside the model's vocabulary of {vocabSize}");
            tokens[i] = token;
            types[i] = (int)GgufTokenType.Normal;
        }
        // Added tokens: control tokens when special, user-defined otherwise (the reference converter's rule).
        foreach (var added in json["added_tokens"]?.AsArray() ?? new JsonArray())
        {
            int i = added!["id"]!.GetValue<int>();
            if (i >= vocabSize) throw new NotSupportedException($"{path}: added token id {i} is outside the model's vocabulary of {vocabSize}");
            tokens[i] = added["content"]!.GetValue<string>();
            types[i] = added["special"]?.GetValue<bool>() == true ? (int)GgufTokenType.Control : (int)GgufTokenType.UserDefined;
        }
        for (int i = 0; i < vocabSize; i++)
        {
            if (tokens[i] is not null) continue;
            tokens[i] = $"[PAD{i}]"; // ids the embedding has but the tokenizer never produces
            types[i] = (int)GgufTokenType.Unused;
        }
        var merges = model["merges"]!.AsArray().Select(m => m switch
        {
            JsonArray pair => pair[0]!.GetValue<string>() + " " + pair[1]!.GetValue<string>(),
            _ => m!.GetValue<string>(),
        }).ToList();

        var ids = tokens.Select((t, i) => (t, i)).GroupBy(x => x.t!).ToDictionary(g => g.Key, g => g.First().i, StringComparer.Ordinal);
        int? Id(string key) => config.NamedToken(key) is { } content && ids.TryGetValue(content, out int id) ? id : null;
        return new GgufVocabulary
        {
            Model = "gpt2",
            PreTokenizer = PreTokenizerName(json["pre_tokenizer"], path),
            Tokens = tokens!,
            TokenTypes = types,
            Merges = merges,
            BosId = Id("bos_token"),
            EosId = Id("eos_token"),
            PadId = Id("pad_token"),
            UnkId = Id("unk_token"),
            AddBos = config.AddBosToken ?? PostProcessorStartsWith(json["post_processor"], config.NamedToken("bos_token")),
            AddEos = config.AddEosToken ?? false,
        };
    }

    static bool UsesByteLevel(JsonNode? preTokenizer) => preTokenizer?["type"]?.GetValue<string>() switch
    {
        "ByteLevel" => true,
        "Sequence" => preTokenizer["pretokenizers"]!.AsArray().Any(p => p!["type"]?.GetValue<string>() == "ByteLevel"),
        _ => false,
    };

    /// <summary>
    /// llama.cpp names pre-tokenizers rather than reading the regex; the reference converter recognises them by hashing
    /// the tokens of a probe text, which needs Python's tokenizers. The regex itself identifies the ones we support.
    /// </summary>
    static string PreTokenizerName(JsonNode? preTokenizer, string path)
    {
        string type = preTokenizer!["type"]!.GetValue<string>();
        if (type == "ByteLevel" && preTokenizer["use_regex"]?.GetValue<bool>() != false) return "gpt-2";
        if (type == "Sequence")
        {
            var parts = preTokenizer["pretokenizers"]!.AsArray();
            var split = parts.FirstOrDefault(p => p!["type"]?.GetValue<string>() == "Split");
            string? regex = split?["pattern"]?["Regex"]?.GetValue<string>();
            if (parts.Count == 2 && regex == Llama3Pattern) return "llama-bpe";
            if (parts.Count == 2 && regex == Qwen2Pattern) return "qwen2";
        }
        throw new NotSupportedException(
            $"{path}: its pre-tokenizer is none that llama.cpp knows by name here (GPT-2, Llama 3, Qwen2); " +
            "llama.cpp would split text differently than the model was trained with");
    }

    static bool PostProcessorStartsWith(JsonNode? processor, string? token)
    {
        if (processor is null || token is null) return false;
        if (processor["type"]?.GetValue<string>() == "Sequence")
            return processor["processors"]!.AsArray().Any(p => PostProcessorStartsWith(p, token));
        return processor["type"]?.GetValue<string>() == "TemplateProcessing"
            && processor["single"]?.AsArray().FirstOrDefault()?["SpecialToken"]?["id"]?.GetValue<string>() == token;
    }

    static GgufVocabulary FromSentencePiece(string path, TokenizerConfig config, int vocabSize)
    {
        var model = SentencePieceModel.Parse(File.ReadAllBytes(path));
        if (model.Kind != SentencePieceModel.ModelKind.Bpe && model.Kind != SentencePieceModel.ModelKind.Unigram)
            throw new NotSupportedException($"{path}: SentencePiece model kind {model.Kind} is not supported");
        if (model.Pieces.Count > vocabSize)
            throw new NotSupportedException($"{path}: {model.Pieces.Count} pieces for a model vocabulary of {vocabSize}");
        var tokens = new List<string>(vocabSize);
        var scores = new List<float>(vocabSize);
        var types = new List<int>(vocabSize);
        foreach (var piece in model.Pieces)
        {
            tokens.Add(piece.Text);
            scores.Add(piece.Score);
            types.Add((int)piece.Type);
        }
        // added_tokens_decoder entries beyond the SentencePiece model (chat markers), as the reference converter adds them.
        var added = config.AddedTokensDecoder.Where(t => t.Id >= tokens.Count).ToDictionary(t => t.Id);
        for (int i = tokens.Count; i < vocabSize; i++)
        {
            bool known = added.TryGetValue(i, out var spec);
            tokens.Add(known ? spec!.Content : $"[PAD{i}]");
            scores.Add(known ? 0f : -1000f);
            types.Add(!known ? (int)GgufTokenType.Unused : spec!.Special ? (int)GgufTokenType.Control : (int)GgufTokenType.UserDefined);
        }
        return new GgufVocabulary
        {
            Model = "llama",
            Tokens = tokens,
            TokenTypes = types,
            Scores = scores,
            BosId = model.BosId >= 0 ? model.BosId : null,
            EosId = model.EosId >= 0 ? model.EosId : null,
            PadId = model.PadId >= 0 ? model.PadId : null,
            UnkId = model.UnkId >= 0 ? model.UnkId : null,
            AddBos = config.AddBosToken ?? true,
            AddEos = config.AddEosToken ?? false,
        };
    }

    /// <summary>Writes the tokenizer.ggml.* keys (and tokenizer.chat_template).</summary>
    public void WriteTo(GgufWriter writer)
    {
        writer.AddString("tokenizer.ggml.model", Model);
        if (PreTokenizer is not null) writer.AddString("tokenizer.ggml.pre", PreTokenizer);
        writer.AddStrings("tokenizer.ggml.tokens", Tokens);
        if (Scores is not null) writer.AddFloat32s("tokenizer.ggml.scores", Scores);
        writer.AddInt32s("tokenizer.ggml.token_type", TokenTypes);
        if (Merges is { Count: > 0 }) writer.AddStrings("tokenizer.ggml.merges", Merges);
        if (BosId is { } bos) writer.AddUInt32("tokenizer.ggml.bos_token_id", (uint)bos);
        if (EosId is { } eos) writer.AddUInt32("tokenizer.ggml.eos_token_id", (uint)eos);
        if (UnkId is { } unk) writer.AddUInt32("tokenizer.ggml.unknown_token_id", (uint)unk);
        if (PadId is { } pad) writer.AddUInt32("tokenizer.ggml.padding_token_id", (uint)pad);
        if (AddBos is { } addBos) writer.AddBool("tokenizer.ggml.add_bos_token", addBos);
        if (AddEos is { } addEos) writer.AddBool("tokenizer.ggml.add_eos_token", addEos);
        if (ChatTemplate is { Length: > 0 }) writer.AddString("tokenizer.chat_template", ChatTemplate);
    }
}
