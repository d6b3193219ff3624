using System.Collections.Concurrent;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using FedLlm.Tokenization;

namespace FedLlm.Defaults;

/// <summary>Paths written by <see cref="ByteLevelBpeTokenizer.Save"/>.</summary>
/// <param name="TokenizerJsonPath">tokenizer.json</param>
/// <param name="TokenizerConfigPath">tokenizer_config.json</param>
public sealed record HuggingFaceTokenizerFiles(string TokenizerJsonPath, string TokenizerConfigPath);

/// <summary>
/// A byte-level BPE tokenizer learnt by <see cref="ByteLevelBpeTrainer"/>: it encodes in memory and saves itself as
/// Hugging Face <c>tokenizer.json</c> + <c>tokenizer_config.json</c> that encode to the same ids.
/// </summary>
/// <remarks>
/// <para>The saved pipeline is GPT-2's (ByteLevel pre-tokenizer and decoder, BPE model without unk) with Llama 3's
/// special tokens and post-processor (TemplateProcessing that prepends <see cref="BosToken"/>).</para>
/// <para>Encoding here mirrors the Rust tokenizers crate, so tests can check one against the other: special-token
/// strings in the text are matched first (leftmost, longest), the rest is pre-tokenized by <see cref="ByteLevel"/>, and
/// within a pre-token the pair with the lowest merge rank is merged first (leftmost on ties) until none applies.</para>
/// <para>Immutable; safe to use from several threads.</para>
/// </remarks>
public sealed class ByteLevelBpeTokenizer : ITextTokenizer
{
    /// <summary>Beginning of text, prepended by the post-processor (Llama 3's name).</summary>
    public const string BosToken = "<|begin_of_text|>";

    /// <summary>End of text, appended to every SFT example (Llama 3's base-model EOS).</summary>
    public const string EosToken = "<|end_of_text|>";

    /// <summary>Padding; Llama 3 has none, so a dedicated one keeps padding distinct from EOS.</summary>
    public const string PadToken = "<|pad|>";

    /// <summary>The special tokens in id order; they follow the model vocabulary.</summary>
    public static IReadOnlyList<string> SpecialTokens { get; } = [BosToken, EosToken, PadToken];

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Indented = true,
        // Fixed line ends so the saved bytes are the same on every OS; relaxed escaping keeps "Ġ" readable.
        NewLine = "\n",
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private readonly string[] _tokens;
    private readonly Dictionary<string, int> _ids;
    private readonly Dictionary<(int, int), (int Rank, int Id)> _mergeRanks;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    internal ByteLevelBpeTokenizer(IReadOnlyList<string> modelTokens, IReadOnlyList<(string Left, string Right)> merges)
    {
        _tokens = [.. modelTokens, .. SpecialTokens];
        _ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < _tokens.Length; i++) _ids.Add(_tokens[i], i);
        ModelVocabSize = modelTokens.Count;
        Merges = merges;
        _mergeRanks = [];
        for (var rank = 0; rank < merges.Count; rank++)
        {
            var (left, right) = merges[rank];
            _mergeRanks.TryAdd((_ids[left], _ids[right]), (rank, _ids[left + right]));
        }

        BosTokenId = _ids[BosToken];
        EosTokenId = _ids[EosToken];
        PadTokenId = _ids[PadToken];
    }

    /// <summary>Merges in rank order (earliest learnt first).</summary>
    public IReadOnlyList<(string Left, string Right)> Merges { get; }

    /// <summary>Ids of the BPE model proper (bytes and merged tokens); special tokens come after.</summary>
    public int ModelVocabSize { get; }

    /// <inheritdoc />
    public int VocabSize => _tokens.Length;

    /// <inheritdoc />
    public int? BosTokenId { get; }

    /// <inheritdoc />
    public int? EosTokenId { get; }

    /// <inheritdoc />
    public int? PadTokenId { get; }

    /// <inheritdoc />
    /// <remarks>None: the default model is trained with the Alpaca SFT template, not a chat template.</remarks>
    public string? ChatTemplate => null;

    /// <inheritdoc />
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        if (addSpecialTokens) ids.Add(BosTokenId!.Value);
        var start = 0;
        while (start < text.Length)
        {
            var (at, special) = FindSpecial(text, start);
            foreach (var piece in ByteLevel.PreTokenize(text[start..at])) ids.AddRange(EncodeWord(piece));
            if (special is null) break;
            ids.Add(_ids[special]);
            start = at + special.Length;
        }

        return ids;
    }

    /// <inheritdoc />
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            if ((uint)id >= (uint)_tokens.Length) throw new ArgumentOutOfRangeException(nameof(ids), id, "Id outside the vocabulary.");
            if (id >= ModelVocabSize)
            {
                if (!skipSpecialTokens) bytes.AddRange(Encoding.UTF8.GetBytes(_tokens[id]));
                continue;
            }

            ByteLevel.AppendBytes(_tokens[id], bytes);
        }

        // Invalid UTF-8 (a multi-byte character cut between ids) becomes U+FFFD, as the Rust decoder's from_utf8_lossy does.
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <inheritdoc />
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _ids.TryGetValue(token, out var id) ? id : null;
    }

    /// <summary>The token string of an id (byte characters for model tokens).</summary>
    public string IdToToken(int id) => _tokens[id];

    /// <summary>Writes tokenizer.json and tokenizer_config.json into <paramref name="directory"/> (created if missing).</summary>
    /// <param name="directory">Destination directory.</param>
    /// <param name="modelMaxLength">The config's <c>model_max_length</c>: the context length of the model using this tokenizer.</param>
    public HuggingFaceTokenizerFiles Save(string directory, int modelMaxLength = 512)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory.CreateDirectory(directory);
        var files = new HuggingFaceTokenizerFiles(
            Path.Combine(directory, "tokenizer.json"), Path.Combine(directory, "tokenizer_config.json"));
        File.WriteAllBytes(files.TokenizerJsonPath, ToTokenizerJson());
        File.WriteAllBytes(files.TokenizerConfigPath, ToTokenizerConfigJson(modelMaxLength));
        return files;
    }

    /// <summary>The Hugging Face tokenizer.json bytes (UTF-8, no BOM, "\n" line ends).</summary>
    public byte[] ToTokenizerJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, WriterOptions))
        {
            w.WriteStartObject();
            w.WriteString("version", "1.0");
            w.WriteNull("truncation");
            w.WriteNull("padding");
            w.WriteStartArray("added_tokens");
            foreach (var token in SpecialTokens)
            {
                w.WriteStartObject();
                w.WriteNumber("id", _ids[token]);
                w.WriteString("content", token);
                w.WriteBoolean("single_word", false);
                w.WriteBoolean("lstrip", false);
                w.WriteBoolean("rstrip", false);
                w.WriteBoolean("normalized", false);
                w.WriteBoolean("special", true);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteNull("normalizer");
            w.WriteStartObject("pre_tokenizer");
            WriteByteLevelOptions(w, addPrefixSpace: false);
            w.WriteEndObject();
            WritePostProcessor(w);
            // GPT-2 and Llama 3 both write these flags on the decoder; the ByteLevel decoder ignores them.
            w.WriteStartObject("decoder");
            WriteByteLevelOptions(w, addPrefixSpace: true);
            w.WriteEndObject();
            WriteModel(w);
            w.WriteEndObject();
        }

        stream.WriteByte((byte)'\n');
        return stream.ToArray();
    }

    /// <summary>The Hugging Face tokenizer_config.json bytes.</summary>
    public byte[] ToTokenizerConfigJson(int modelMaxLength = 512)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(modelMaxLength);
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, WriterOptions))
        {
            w.WriteStartObject();
            w.WriteBoolean("add_bos_token", true);
            w.WriteBoolean("add_eos_token", false);
            w.WriteStartObject("added_tokens_decoder");
            foreach (var token in SpecialTokens)
            {
                w.WriteStartObject(_ids[token].ToString(System.Globalization.CultureInfo.InvariantCulture));
                w.WriteString("content", token);
                w.WriteBoolean("lstrip", false);
                w.WriteBoolean("normalized", false);
                w.WriteBoolean("rstrip", false);
                w.WriteBoolean("single_word", false);
                w.WriteBoolean("special", true);
                w.WriteEndObject();
            }

            w.WriteEndObject();
            w.WriteString("bos_token", BosToken);
            w.WriteBoolean("clean_up_tokenization_spaces", false);
            w.WriteString("eos_token", EosToken);
            w.WriteStartArray("model_input_names");
            w.WriteStringValue("input_ids");
            w.WriteStringValue("attention_mask");
            w.WriteEndArray();
            w.WriteNumber("model_max_length", modelMaxLength);
            w.WriteString("pad_token", PadToken);
            w.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
            w.WriteEndObject();
        }

        stream.WriteByte((byte)'\n');
        return stream.ToArray();
    }

    private static void WriteByteLevelOptions(Utf8JsonWriter w, bool addPrefixSpace)
    {
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", addPrefixSpace);
        w.WriteBoolean("trim_offsets", true);
        w.WriteBoolean("use_regex", true);
    }

    private void WritePostProcessor(Utf8JsonWriter w)
    {
        // Llama 3's template: "<|begin_of_text|> $A" and "<|begin_of_text|> $A <|begin_of_text|> $B:1".
        w.WriteStartObject("post_processor");
        w.WriteString("type", "TemplateProcessing");
        w.WriteStartArray("single");
        WritePiece(w, "SpecialToken", BosToken, 0);
        WritePiece(w, "Sequence", "A", 0);
        w.WriteEndArray();
        w.WriteStartArray("pair");
        WritePiece(w, "SpecialToken", BosToken, 0);
        WritePiece(w, "Sequence", "A", 0);
        WritePiece(w, "SpecialToken", BosToken, 1);
        WritePiece(w, "Sequence", "B", 1);
        w.WriteEndArray();
        w.WriteStartObject("special_tokens");
        w.WriteStartObject(BosToken);
        w.WriteString("id", BosToken);
        w.WriteStartArray("ids");
        w.WriteNumberValue(_ids[BosToken]);
        w.WriteEndArray();
        w.WriteStartArray("tokens");
        w.WriteStringValue(BosToken);
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WritePiece(Utf8JsonWriter w, string kind, string id, int typeId)
    {
        w.WriteStartObject();
        w.WriteStartObject(kind);
        w.WriteString("id", id);
        w.WriteNumber("type_id", typeId);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private void WriteModel(Utf8JsonWriter w)
    {
        w.WriteStartObject("model");
        w.WriteString("type", "BPE");
        w.WriteNull("dropout");
        w.WriteNull("unk_token");
        w.WriteNull("continuing_subword_prefix");
        w.WriteNull("end_of_word_suffix");
        w.WriteBoolean("fuse_unk", false);
        w.WriteBoolean("byte_fallback", false);
        // Special tokens live in added_tokens only, as in Llama 3's file.
        w.WriteStartObject("vocab");
        for (var id = 0; id < ModelVocabSize; id++) w.WriteNumber(_tokens[id], id);
        w.WriteEndObject();
        // "left right" strings, the format every tokenizers version reads; byte-level tokens never contain a space.
        w.WriteStartArray("merges");
        foreach (var (left, right) in Merges) w.WriteStringValue(left + " " + right);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>The first special token at or after <paramref name="start"/>, longest on ties; (text.Length, null) if none.</summary>
    private static (int At, string? Token) FindSpecial(string text, int start)
    {
        var at = text.Length;
        string? found = null;
        foreach (var token in SpecialTokens)
        {
            var i = text.IndexOf(token, start, StringComparison.Ordinal);
            if (i >= 0 && (i < at || (i == at && token.Length > found!.Length)))
            {
                at = i;
                found = token;
            }
        }

        return (at, found);
    }

    private int[] EncodeWord(string word) => _cache.GetOrAdd(word, MergeWord);

    private int[] MergeWord(string word)
    {
        var symbols = new List<int>(word.Length);
        foreach (var c in word) symbols.Add(_ids[c.ToString()]);
        while (symbols.Count > 1)
        {
            var bestRank = int.MaxValue;
            var bestAt = -1;
            var bestId = -1;
            for (var i = 0; i + 1 < symbols.Count; i++)
            {
                if (_mergeRanks.TryGetValue((symbols[i], symbols[i + 1]), out var merge) && merge.Rank < bestRank)
                    (bestRank, bestAt, bestId) = (merge.Rank, i, merge.Id);
            }

            if (bestAt < 0) break;
            symbols[bestAt] = bestId;
            symbols.RemoveAt(bestAt + 1);
        }

        return [.. symbols];
    }
}
