namespace FedLlm.Tokenization;

/// <summary>
/// A tokenizer with Hugging Face semantics: ids, special tokens and BOS/EOS as the model's tokenizer files define them.
/// </summary>
/// <remarks>
/// Implementations are immutable after loading and safe to use from several threads.
/// Members with a body have a default so that test fakes need not implement them.
/// </remarks>
public interface ITextTokenizer
{
    /// <summary>Number of ids, added tokens included (the largest id + 1).</summary>
    int VocabSize { get; }

    /// <summary>Id of the beginning-of-sequence token, or null if the model has none (Qwen).</summary>
    int? BosTokenId { get; }

    /// <summary>Id of tokenizer_config.json's <c>eos_token</c>, or null if the model has none.</summary>
    int? EosTokenId { get; }

    /// <summary>
    /// Every id that ends generation: <see cref="EosTokenId"/> first, then generation_config.json's
    /// <c>eos_token_id</c> (an int or a list), without repeats.
    /// </summary>
    /// <remarks>Llama 3 Instruct stops on &lt;|eot_id|&gt; although its tokenizer's EOS is &lt;|end_of_text|&gt;.</remarks>
    IReadOnlyList<int> EosTokenIds => EosTokenId is int id ? [id] : [];

    /// <summary>Padding id: the tokenizer's pad token, else its unk token, else EOS (what HF users set by hand).</summary>
    int? PadTokenId { get; }

    /// <summary>The Jinja chat template from tokenizer_config.json, if the model has one.</summary>
    string? ChatTemplate { get; }

    /// <summary>
    /// Tokens matched before the model splits text (special tokens such as &lt;|eot_id|&gt;, and others such as
    /// Qwen's &lt;think&gt;), in id order.
    /// </summary>
    IReadOnlyList<AddedToken> AddedTokens => [];

    /// <summary>
    /// The most characters of input that one token can cover (the longest vocabulary entry or added token), or null
    /// when unknown; <see cref="Data.TokenizerInputCap"/> bounds the text it tokenizes with it.
    /// </summary>
    int? MaxTokenChars => null;

    /// <summary>Encodes text. With <paramref name="addSpecialTokens"/> the tokenizer's own post-processor adds BOS (and EOS where it does).</summary>
    IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false);

    /// <summary>
    /// Decodes ids to text as HF <c>tokenizer.decode</c> does; with <paramref name="skipSpecialTokens"/> the ids of
    /// special added tokens are left out.
    /// </summary>
    string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true);

    /// <summary>The id of a token string (special or not), or null if it is not in the vocabulary.</summary>
    int? TokenToId(string token);
}

/// <summary>A token that the tokenizer matches in raw text before its model runs.</summary>
/// <param name="Id">The token's id.</param>
/// <param name="Content">The exact text that is matched.</param>
/// <param name="Special">True for control tokens, which <see cref="ITextTokenizer.Decode"/> can skip.</param>
public sealed record AddedToken(int Id, string Content, bool Special);
