using System.Text.Json.Nodes;

namespace FedLlm.Tokenization;

/// <summary>
/// Turns a SentencePiece BPE tokenizer.model into the tokenizer.json that transformers builds from it.
/// </summary>
/// <remarks>
/// When a Llama checkpoint has only tokenizer.model, <c>AutoTokenizer</c> returns <c>LlamaTokenizerFast</c> built by
/// transformers' <c>LlamaConverter</c> (convert_slow_tokenizer.py). This repeats that conversion:
/// <list type="bullet">
/// <item>vocab = the pieces in id order; merges = every split of a piece into two pieces, ordered by the merged piece's
/// score (highest first), then by the longer left part, then the longer right part (<c>generate_merges</c>);</item>
/// <item>BPE with byte_fallback and fuse_unk; control pieces become special added tokens, user-defined ones plain added tokens;</item>
/// <item>legacy (the default): normalizer Prepend("▁") + Replace(" ", "▁"), so every text piece between special tokens
/// gets the dummy prefix; legacy=false: a Metaspace pre-tokenizer that prepends only at the start of the text;</item>
/// <item>decoder Replace("▁", " "), ByteFallback, Fuse, Strip(1 leading space); the post-processor (BOS/EOS) is left to
/// <see cref="HfTokenizer"/>, as LlamaTokenizerFast sets it from add_bos_token / add_eos_token.</item>
/// </list>
/// The sentencepiece normalizer spec is ignored, as LlamaConverter ignores it (Llama models use "identity").
/// </remarks>
internal static class SentencePieceConverter
{
    private const string Metaspace = "\u2581";

    public static JsonObject ToTokenizerJson(SentencePieceModel model, TokenizerConfig config, string source)
    {
        if (model.Kind != SentencePieceModel.ModelKind.Bpe)
        {
            throw new TokenizerException(
                $"'{source}' is a SentencePiece {model.Kind} model; only BPE models (the Llama family's) are supported.");
        }

        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        var vocab = new JsonObject();
        for (int id = 0; id < model.Pieces.Count; id++)
        {
            string piece = model.Pieces[id].Text;
            if (ids.TryAdd(piece, id))
            {
                vocab[piece] = id;
            }
        }

        var addedTokens = new JsonArray();
        for (int id = 0; id < model.Pieces.Count; id++)
        {
            var piece = model.Pieces[id];
            if (piece.Type is SentencePieceModel.PieceType.Control or SentencePieceModel.PieceType.UserDefined
                or SentencePieceModel.PieceType.Unknown)
            {
                bool special = piece.Type != SentencePieceModel.PieceType.UserDefined;
                addedTokens.Add(new AddedTokenSpec(id, piece.Text, special, Normalized: false).ToJson());
            }
        }

        bool legacy = config.Legacy ?? true;
        bool addPrefixSpace = config.AddPrefixSpace ?? true;
        var decoders = new JsonArray
        {
            new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = Metaspace }, ["content"] = " " },
            new JsonObject { ["type"] = "ByteFallback" },
            new JsonObject { ["type"] = "Fuse" },
        };
        if (addPrefixSpace)
        {
            decoders.Add(new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 });
        }

        JsonObject? normalizer = null;
        JsonObject? preTokenizer = null;
        if (legacy)
        {
            var steps = new JsonArray();
            if (addPrefixSpace)
            {
                steps.Add(new JsonObject { ["type"] = "Prepend", ["prepend"] = Metaspace });
            }

            steps.Add(new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = Metaspace });
            normalizer = new JsonObject { ["type"] = "Sequence", ["normalizers"] = steps };
        }
        else
        {
            preTokenizer = new JsonObject
            {
                ["type"] = "Metaspace",
                ["replacement"] = Metaspace,
                ["prepend_scheme"] = addPrefixSpace ? "first" : "never",
                ["split"] = false,
            };
        }

        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = addedTokens,
            ["normalizer"] = normalizer,
            ["pre_tokenizer"] = preTokenizer,
            ["post_processor"] = null,
            ["decoder"] = new JsonObject { ["type"] = "Sequence", ["decoders"] = decoders },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = model.PieceAt(model.UnkId),
                ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null,
                ["fuse_unk"] = true,
                // LlamaConverter sets byte fallback whatever the trainer said (handle_byte_fallback = True).
                ["byte_fallback"] = true,
                ["ignore_merges"] = false,
                ["vocab"] = vocab,
                ["merges"] = Merges(model, ids),
            },
        };
    }

    /// <summary>transformers' generate_merges with vocab scores.</summary>
    private static JsonArray Merges(SentencePieceModel model, Dictionary<string, int> ids)
    {
        var merges = new List<(string Left, string Right, float Score, int LeftRunes, int RightRunes)>();
        var local = new List<(string Left, string Right, int LeftId, int RightId)>();
        foreach (var piece in model.Pieces)
        {
            local.Clear();
            string text = piece.Text;
            // Python slices strings by code point, so split only between runes, never inside a surrogate pair.
            for (int cut = 0; cut < text.Length;)
            {
                cut += char.IsSurrogatePair(text, cut) ? 2 : 1;
                if (cut >= text.Length)
                {
                    break;
                }

                string left = text[..cut], right = text[cut..];
                if (ids.TryGetValue(left, out int leftId) && ids.TryGetValue(right, out int rightId))
                {
                    local.Add((left, right, leftId, rightId));
                }
            }

            foreach (var (left, right, _, _) in local.OrderBy(m => m.LeftId).ThenBy(m => m.RightId))
            {
                merges.Add((left, right, piece.Score, RuneCount(left), RuneCount(right)));
            }
        }

        // LINQ's sort is stable, like Python's sorted(..., reverse=True) on equal keys.
        var ordered = merges
            .OrderByDescending(m => m.Score)
            .ThenByDescending(m => m.LeftRunes)
            .ThenByDescending(m => m.RightRunes);
        var result = new JsonArray();
        foreach (var m in ordered)
        {
            result.Add(new JsonArray(m.Left, m.Right));
        }

        return result;
    }

    private static int RuneCount(string s) => s.EnumerateRunes().Count();
}
