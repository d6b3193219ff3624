namespace FedLlm.Tokenization;

/// <summary>
/// A tokenizer with Hugging Face semantics: ids, special tokens and BOS/EOS as the model's tokenizer files define them.
/// </summary>
/// <remarks>Implementations are immutable after loading and safe to use from several threads.</remarks>
public interface ITextTokenizer
{
    /// <summary>Number of ids, added tokens included (the largest id + 1).</summary>
    int VocabSize { get; }

    int? BosTokenId { get; }
    int? EosTokenId { get; }

    /// <summary>Padding id: the tokenizer's pad token, else its unk token, else EOS (what HF users set by hand).</summary>
    int? PadTokenId { get; }

    /// <summary>The Jinja chat template from tokenizer_config.json, if the model has one.</summary>
    string? ChatTemplate { get; }

    /// <summary>Encodes text. With <paramref name="addSpecialTokens"/> the tokenizer's own post-processor adds BOS (and EOS where it does).</summary>
    IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false);

    string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true);

    /// <summary>The id of a token string (special or not), or null if it is not in the vocabulary.</summary>
    int? TokenToId(string token);
}
