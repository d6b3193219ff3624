using FedLlm.Tokenization;

namespace FedLlm.Data;

/// <summary>
/// Cuts text down before it is tokenized, to a length that still holds every token truncation would keep, so the
/// memory a record costs is bounded by the sequence length rather than by the record.
/// </summary>
/// <remarks>
/// <para>Tokenizing costs memory per character (the native tokenizer keeps offsets, pieces and ids for each token), and
/// truncation to a few hundred tokens only happens after that, so one huge record would cost its whole length.</para>
/// <para><b>Why the bound keeps the kept tokens.</b> No token covers more than <c>L</c> characters of the input, where
/// <c>L</c> is <see cref="ITextTokenizer.MaxTokenChars"/> (the longest vocabulary entry). So the first <c>n</c> tokens
/// of a text lie within its first <c>n·L</c> characters, and any <c>n·L</c> characters hold at least <c>n</c> tokens.
/// Truncation keeps at most <c>maxTokens</c> tokens from each end of a part (the start of a response; the start and
/// the end of an instruction). Keeping <see cref="CharsPerEnd"/> = <c>2·maxTokens·L</c> characters at each end that is
/// kept therefore (a) still gives more than <c>maxTokens</c> tokens, so an example that was truncated is truncated the
/// same way, and (b) leaves the kept tokens <c>maxTokens·L</c> characters away from the cut. Tokenizers split text into
/// words before merging (at spaces, punctuation and digit groups), and a word's tokens do not depend on text outside
/// it, so the cut changes no kept token unless a single unbroken word runs from a kept token to the cut, longer than
/// <c>maxTokens·L</c> characters; such a word may tokenize differently in its part past the kept tokens.</para>
/// <para>A cut never splits a surrogate pair.</para>
/// </remarks>
public static class TokenizerInputCap
{
    /// <summary>
    /// <c>L</c> for a tokenizer that does not know its longest token: longer than any entry of the Llama, Qwen or GPT
    /// vocabularies, so the bound stays safe at some cost in memory.
    /// </summary>
    public const int UnknownTokenChars = 256;

    /// <summary>Characters to keep at each end of a part that truncation may cut to <paramref name="maxTokens"/> tokens.</summary>
    public static int CharsPerEnd(ITextTokenizer tokenizer, int maxTokens)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxTokens);
        var perToken = Math.Max(1, tokenizer.MaxTokenChars ?? UnknownTokenChars);
        return (int)Math.Min(int.MaxValue / 2, 2L * maxTokens * perToken);
    }

    /// <summary>The first <paramref name="chars"/> characters of <paramref name="text"/>, or the text if shorter.</summary>
    public static string KeepStart(string text, int chars)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length <= chars) return text;
        var end = chars > 0 && char.IsHighSurrogate(text[chars - 1]) ? chars - 1 : chars;
        return text[..end];
    }

    /// <summary>
    /// The first and the last <paramref name="charsPerEnd"/> characters of <paramref name="text"/> joined, or the text if
    /// it is no longer than both; for parts truncated in the middle.
    /// </summary>
    public static string KeepEnds(string text, int charsPerEnd)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length <= 2L * charsPerEnd) return text;
        var tailStart = text.Length - charsPerEnd;
        if (char.IsLowSurrogate(text[tailStart])) tailStart++;
        return string.Concat(KeepStart(text, charsPerEnd).AsSpan(), text.AsSpan(tailStart));
    }
}
