// Why the Rust library (Tokenizers.DotNet 1.4.1, a wrapper of Hugging Face's `tokenizers`) and not
// Microsoft.ML.Tokenizers 2.0.1: both were run on the 79 hard strings of tests/reference/tokenizers/make_golden.mjs
// against its reference (tokenizers.js; sentencepiece itself for tokenizer.model), by tests/reference/tokenizers/measure.
// Strings that differ, of 79 per fixture: ids / ids with special tokens / decode / decode keeping special tokens.
//
//   fixture                         Tokenizers.DotNet (raw)   Microsoft.ML.Tokenizers (best adapter built from the files)
//   llama3 (byte-level BPE)         0 / 0 / 2 / 2             BpeTokenizer  0 / 0 / 2 / 2
//   qwen3 (byte-level BPE, NFC)     0 / 0 / 0 / 0             BpeTokenizer  0 / 0 / 2 / 0  (2 / 2 / 2 / 0 with this
//                                                                            project's InvariantGlobalization: no NFC)
//   mistral (SentencePiece json)    0 / 0 / 0 / 0             BpeTokenizer 27 / 27 / 22 / 22  (no byte fallback)
//   mistral, Metaspace variant      0 / 0 / 0 / 0             BpeTokenizer 30 / 30 / 22 / 22
//   spm-llama (tokenizer.model)     0 / 0 / 0 / 0 converted   LlamaTokenizer 5 / 6 / 0 / -  (3 ids even with special
//                                   by SentencePieceConverter                tokens split off first: runs of spaces and
//                                                                            dashes merge in another order)
// The 2 llama3 decodes are transformers' own clean_up_tokenization_spaces step, which this class adds; ML's decode also
// drops Qwen's non-special added tokens (<think>). With the glue below every count is 0.
//
// The wrapper only offers Encode(text) with add_special_tokens=true and Decode(ids) with skip_special_tokens=true, and
// loads only from a file. So this class loads the same tokenizer.json twice: as is, and with no post-processor and no
// token marked special, which gives add_special_tokens=false and skip_special_tokens=false.

using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using NativeTokenizer = Tokenizers.DotNet.Tokenizer;

namespace FedLlm.Tokenization;

/// <summary>
/// A Hugging Face fast tokenizer: tokenizer.json (or a converted tokenizer.model) run by the Rust <c>tokenizers</c>
/// library, plus what transformers adds around it from tokenizer_config.json.
/// </summary>
/// <remarks>
/// Semantics follow transformers' <c>PreTrainedTokenizerFast</c>: LlamaTokenizer classes rebuild the post-processor from
/// add_bos_token / add_eos_token, other classes keep tokenizer.json's unless the config sets either flag, decode applies
/// clean_up_tokenization_spaces when the config asks for it (transformers 4.x; 5.x skips it for BPE models), and named
/// special tokens missing from tokenizer.json are added as special tokens. Thread-safe: the Rust tokenizer is only read.
/// Dispose frees the native tokenizers early; otherwise their finalizers do.
/// </remarks>
internal sealed class HfTokenizer : ITextTokenizer, IDisposable
{
    private readonly NativeTokenizer _withSpecialTokens;
    private readonly NativeTokenizer _plain;
    private readonly Dictionary<string, int> _tokenToId;
    private readonly bool _cleanUpTokenizationSpaces;

    private HfTokenizer(
        NativeTokenizer withSpecialTokens,
        NativeTokenizer plain,
        Dictionary<string, int> tokenToId,
        IReadOnlyList<AddedToken> addedTokens,
        TokenizerConfig config)
    {
        _withSpecialTokens = withSpecialTokens;
        _plain = plain;
        _tokenToId = tokenToId;
        _cleanUpTokenizationSpaces = config.CleanUpTokenizationSpaces;
        AddedTokens = addedTokens;
        VocabSize = tokenToId.Count == 0 ? 0 : tokenToId.Values.Max() + 1;
        BosTokenId = IdOf(config.NamedToken("bos_token"));
        EosTokenId = IdOf(config.NamedToken("eos_token"));
        PadTokenId = IdOf(config.NamedToken("pad_token")) ?? IdOf(config.NamedToken("unk_token")) ?? EosTokenId;
        EosTokenIds = new[] { EosTokenId }.OfType<int>().Concat(config.GenerationEosTokenIds).Distinct().ToArray();
        ChatTemplate = config.ChatTemplate;
        // Vocabulary entries are written one character per input byte (byte-level BPE) or per input character
        // (SentencePiece, with "▁" for a space), so an entry's length bounds the input characters its token covers.
        MaxTokenChars = tokenToId.Keys.Select(k => k.Length).Concat(addedTokens.Select(t => t.Content.Length)).DefaultIfEmpty(1).Max();
    }

    public int? MaxTokenChars { get; }

    public int VocabSize { get; }
    public int? BosTokenId { get; }
    public int? EosTokenId { get; }
    public IReadOnlyList<int> EosTokenIds { get; }
    public int? PadTokenId { get; }
    public string? ChatTemplate { get; }
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>Builds the tokenizer from a parsed tokenizer.json; <paramref name="source"/> names the file in errors.</summary>
    /// <param name="tokenizerJson">The parsed tokenizer.json. It is modified.</param>
    /// <param name="config">What tokenizer_config.json and its companions say.</param>
    /// <param name="source">The file the JSON came from, for error messages.</param>
    /// <param name="llamaClass">Treat the tokenizer as LlamaTokenizerFast whatever tokenizer_class says.</param>
    public static HfTokenizer Create(JsonObject tokenizerJson, TokenizerConfig config, string source, bool llamaClass = false)
    {
        llamaClass |= config.IsLlamaClass;
        if (llamaClass)
        {
            // LlamaTokenizerFast's constructor defaults.
            config.SetDefaultNamedToken("bos_token", "<s>");
            config.SetDefaultNamedToken("eos_token", "</s>");
            config.SetDefaultNamedToken("unk_token", "<unk>");
        }

        var (tokenToId, added) = TokenizerConfig.Wrap(source, () => ReadVocabulary(tokenizerJson));
        AddConfigTokens(tokenizerJson, config, tokenToId, added);

        if (PostProcessorOverride(tokenizerJson, config, llamaClass) is var (addBos, addEos))
        {
            tokenizerJson["post_processor"] = TemplateProcessing(config, tokenToId, addBos, addEos, source);
        }

        NativeTokenizer? withSpecialTokens = null;
        try
        {
            withSpecialTokens = LoadNative(tokenizerJson, source);

            // Same tokenizer without a post-processor (add_special_tokens=false) and with no token marked special
            // (decode keeps every token). Marking a token special changes nothing else in the Rust library's encode.
            tokenizerJson["post_processor"] = null;
            foreach (var token in tokenizerJson["added_tokens"]!.AsArray())
            {
                token!["special"] = false;
            }

            var plain = LoadNative(tokenizerJson, source);
            var addedTokens = added.OrderBy(t => t.Id).Select(t => new AddedToken(t.Id, t.Content, t.Special)).ToArray();
            return new HfTokenizer(withSpecialTokens, plain, tokenToId, addedTokens, config);
        }
        catch
        {
            withSpecialTokens?.Dispose();
            throw;
        }
    }

    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!IsWellFormedUtf16(text))
        {
            // Python cannot hand such a string to the Rust library either.
            throw new ArgumentException("The text contains an unpaired surrogate, which has no UTF-8 form.", nameof(text));
        }

        var native = addSpecialTokens ? _withSpecialTokens : _plain;
        uint[] ids = Native(() => native.Encode(text));
        var result = new int[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            result[i] = checked((int)ids[i]);
        }

        return result;
    }

    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        uint[] native = ids.Select(id => id >= 0
            ? (uint)id
            : throw new ArgumentOutOfRangeException(nameof(ids), id, "Token ids cannot be negative.")).ToArray();

        // Ids past the vocabulary are dropped, as the Rust library (and so transformers) drops them.
        string text = native.Length == 0
            ? ""
            : Native(() => (skipSpecialTokens ? _withSpecialTokens : _plain).Decode(native));
        return _cleanUpTokenizationSpaces ? CleanUpTokenization(text) : text;
    }

    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _tokenToId.TryGetValue(token, out int id) ? id : null;
    }

    public void Dispose()
    {
        _withSpecialTokens.Dispose();
        _plain.Dispose();
    }

    /// <summary>transformers' clean_up_tokenization: removes the space before punctuation and English contractions.</summary>
    internal static string CleanUpTokenization(string text) => text
        .Replace(" .", ".", StringComparison.Ordinal)
        .Replace(" ?", "?", StringComparison.Ordinal)
        .Replace(" !", "!", StringComparison.Ordinal)
        .Replace(" ,", ",", StringComparison.Ordinal)
        .Replace(" ' ", "'", StringComparison.Ordinal)
        .Replace(" n't", "n't", StringComparison.Ordinal)
        .Replace(" 'm", "'m", StringComparison.Ordinal)
        .Replace(" 's", "'s", StringComparison.Ordinal)
        .Replace(" 've", "'ve", StringComparison.Ordinal)
        .Replace(" 're", "'re", StringComparison.Ordinal);

    private int? IdOf(string? token) => token is not null && _tokenToId.TryGetValue(token, out int id) ? id : null;

    private static (Dictionary<string, int> TokenToId, List<AddedTokenSpec> Added) ReadVocabulary(JsonObject json)
    {
        var model = json["model"] as JsonObject ?? throw new JsonException("there is no \"model\" object");
        var tokenToId = new Dictionary<string, int>(StringComparer.Ordinal);
        switch (model["vocab"])
        {
            case JsonObject vocab: // BPE, WordPiece, WordLevel: {"token": id}
                foreach (var (token, id) in vocab)
                {
                    tokenToId[token] = id!.GetValue<int>();
                }

                break;
            case JsonArray pieces: // Unigram: [["piece", score], ...], id = position
                for (int i = 0; i < pieces.Count; i++)
                {
                    tokenToId[pieces[i]![0]!.GetValue<string>()] = i;
                }

                break;
            default:
                throw new JsonException("\"model\" has no \"vocab\"");
        }

        json["added_tokens"] ??= new JsonArray();
        var added = json["added_tokens"]!.AsArray()
            .Select(t => AddedTokenSpec.FromJson(t!.AsObject(), t!["id"]!.GetValue<int>()))
            .ToList();
        foreach (var token in added)
        {
            tokenToId[token.Content] = token.Id;
        }

        return (tokenToId, added);
    }

    /// <summary>
    /// transformers adds tokenizer_config.json's added_tokens_decoder entries and the named special tokens that
    /// tokenizer.json lacks; a token outside the vocabulary gets the next free id.
    /// </summary>
    private static void AddConfigTokens(
        JsonObject json, TokenizerConfig config, Dictionary<string, int> tokenToId, List<AddedTokenSpec> added)
    {
        var jsonAdded = json["added_tokens"]!.AsArray();
        var present = added.Select(t => t.Content).ToHashSet(StringComparer.Ordinal);
        int nextId = tokenToId.Count == 0 ? 0 : tokenToId.Values.Max() + 1;

        void Add(AddedTokenSpec token)
        {
            added.Add(token);
            present.Add(token.Content);
            tokenToId[token.Content] = token.Id;
            nextId = Math.Max(nextId, token.Id + 1);
            jsonAdded.Add(token.ToJson());
        }

        foreach (var token in config.AddedTokensDecoder.Where(t => !present.Contains(t.Content)))
        {
            Add(token);
        }

        foreach (string content in config.SpecialTokenContents().Where(c => !present.Contains(c)).Distinct().ToArray())
        {
            Add(new AddedTokenSpec(tokenToId.TryGetValue(content, out int id) ? id : nextId, content, Special: true));
        }
    }

    /// <summary>
    /// (add BOS, add EOS) when transformers replaces tokenizer.json's post-processor, else null.
    /// LlamaTokenizerFast always does (defaults true / false); other fast tokenizers do when the config sets a flag
    /// or tokenizer.json has no post-processor (defaults false / false).
    /// </summary>
    private static (bool AddBos, bool AddEos)? PostProcessorOverride(JsonObject json, TokenizerConfig config, bool llamaClass)
    {
        if (llamaClass)
        {
            return (config.AddBosToken ?? true, config.AddEosToken ?? false);
        }

        if (config.AddBosToken is not null || config.AddEosToken is not null || json["post_processor"] is null)
        {
            return (config.AddBosToken ?? false, config.AddEosToken ?? false);
        }

        return null;
    }

    /// <summary>The TemplateProcessing that transformers' update_post_processor builds: "[bos] $A [eos]".</summary>
    private static JsonObject TemplateProcessing(
        TokenizerConfig config, Dictionary<string, int> tokenToId, bool addBos, bool addEos, string source)
    {
        var single = new JsonArray();
        var pair = new JsonArray();
        var specialTokens = new JsonObject();

        string? Special(string key, bool wanted)
        {
            if (!wanted)
            {
                return null;
            }

            string? token = config.NamedToken(key);
            if (token is null || !tokenToId.TryGetValue(token, out int id))
            {
                throw new TokenizerException(
                    $"'{source}': add_{key} is true but the {key} is {(token is null ? "not set" : $"'{token}', which is not in the vocabulary")}.");
            }

            specialTokens[token] = new JsonObject { ["id"] = token, ["ids"] = new JsonArray(id), ["tokens"] = new JsonArray(token) };
            return token;
        }

        static JsonObject Token(string token, int typeId) => new() { ["SpecialToken"] = new JsonObject { ["id"] = token, ["type_id"] = typeId } };
        static JsonObject Sequence(string id, int typeId) => new() { ["Sequence"] = new JsonObject { ["id"] = id, ["type_id"] = typeId } };

        string? bos = Special("bos_token", addBos);
        string? eos = Special("eos_token", addEos);
        foreach (var (template, sequences) in new[] { (single, new[] { "A" }), (pair, new[] { "A", "B" }) })
        {
            for (int typeId = 0; typeId < sequences.Length; typeId++)
            {
                if (bos is not null)
                {
                    template.Add(Token(bos, typeId));
                }

                template.Add(Sequence(sequences[typeId], typeId));
                if (eos is not null)
                {
                    template.Add(Token(eos, typeId));
                }
            }
        }

        return new JsonObject { ["type"] = "TemplateProcessing", ["single"] = single, ["pair"] = pair, ["special_tokens"] = specialTokens };
    }

    /// <summary>The wrapper loads only from a path: write the JSON to a temporary file, load it, delete it.</summary>
    private static NativeTokenizer LoadNative(JsonObject json, string source)
    {
        string path = Path.Combine(Path.GetTempPath(), $"fedllm-tokenizer-{Guid.NewGuid():N}.json");
        try
        {
            using (var stream = File.Create(path))
            using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                json.WriteTo(writer);
            }

            return new NativeTokenizer(path);
        }
        catch (Tokenizers.DotNet.TokenizerException e)
        {
            throw new TokenizerException($"The tokenizers library rejected '{source}': {e.Message}", e);
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException or EntryPointNotFoundException)
        {
            throw new TokenizerException(
                $"Cannot load the native tokenizers library (package Tokenizers.DotNet.runtime.*) for '{source}': {e.Message}", e);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static T Native<T>(Func<T> call)
    {
        try
        {
            return call();
        }
        catch (Tokenizers.DotNet.TokenizerException e)
        {
            throw new TokenizerException($"The tokenizers library failed: {e.Message}", e);
        }
    }

    private static bool IsWellFormedUtf16(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(text[i]))
            {
                return false;
            }
        }

        return true;
    }
}
