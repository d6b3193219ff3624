using FedLlm.Tokenization;

namespace FedLlm.Tests.Data;

/// <summary>
/// A character-level fake: one id per UTF-16 char (id = char + 10), so token positions map 1:1 to text positions
/// and expected masks can be computed from string lengths.
/// </summary>
internal sealed class CharTokenizer : ITextTokenizer
{
    public const int Bos = 1;
    public const int Eos = 2;
    public const int Pad = 7;
    private const int Offset = 10;

    /// <param name="appendEos">Make the post-processor append EOS, as some tokenizers do.</param>
    /// <param name="mergeColonSpace">Encode ": " as one token, merging across the prompt/response boundary
    /// the way a SentencePiece tokenizer may.</param>
    /// <param name="hasEos">Whether the tokenizer defines EOS at all.</param>
    public CharTokenizer(bool appendEos = false, bool mergeColonSpace = false, bool hasEos = true)
    {
        AppendEos = appendEos;
        MergeColonSpace = mergeColonSpace;
        EosTokenId = hasEos ? Eos : null;
    }

    /// <summary>The id of the merged ": " token.</summary>
    public const int ColonSpace = 3;

    public bool AppendEos { get; }
    public bool MergeColonSpace { get; }
    public int VocabSize => Offset + char.MaxValue + 1;
    public int? BosTokenId => Bos;
    public int? EosTokenId { get; }
    public int? PadTokenId => Pad;
    public string? ChatTemplate => null;

    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false)
    {
        var ids = new List<int>();
        if (addSpecialTokens) ids.Add(Bos);
        for (var i = 0; i < text.Length; i++)
        {
            if (MergeColonSpace && text[i] == ':' && i + 1 < text.Length && text[i + 1] == ' ')
            {
                ids.Add(ColonSpace);
                i++;
                continue;
            }

            ids.Add(text[i] + Offset);
        }

        if (addSpecialTokens && AppendEos) ids.Add(Eos);
        return ids;
    }

    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true) =>
        string.Concat(ids.Select(id => id switch
        {
            Bos => skipSpecialTokens ? "" : "<s>",
            Eos => skipSpecialTokens ? "" : "</s>",
            Pad => skipSpecialTokens ? "" : "<pad>",
            ColonSpace => ": ",
            _ => ((char)(id - Offset)).ToString(),
        }));

    public int? TokenToId(string token) => token.Length == 1 ? token[0] + Offset : null;
}
