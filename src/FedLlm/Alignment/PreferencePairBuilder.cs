using FedLlm.Data;
using FedLlm.Tokenization;

namespace FedLlm.Alignment;

/// <summary>
/// Tokenizes a <see cref="PreferenceExample"/> into a <see cref="PreferencePair"/> and truncates it as TRL's DPO
/// collator does (max_length 512, max_prompt_length 128, truncation_mode keep_end).
/// </summary>
/// <remarks>
/// <para><b>Tokens.</b> The prompt is encoded with the tokenizer's special tokens (so BOS comes exactly as the model's
/// tokenizer adds it; an EOS its post-processor appends is dropped). Each response's ids are the tokens of
/// <c>prompt + response</c> after their common prefix with the prompt's tokens, which is what the model sees in context
/// (TRL ≥ 0.7.5 <c>build_tokenized_answer</c>); encoding the response alone, as TRL 0.7.2 did, gives SentencePiece
/// tokenizers a spurious leading "▁" token. If the tokenizer merges across the boundary, the response is encoded alone
/// instead and <see cref="PreferencePair.BoundaryAligned"/> is false. Every response then gets the EOS id.</para>
/// <para><b>Truncation</b> (TRL, both versions): when prompt + the longer response exceeds <see cref="MaxLength"/>, the
/// prompt keeps its last <see cref="MaxPromptLength"/> tokens; if that is still too long, each response keeps its first
/// <c>MaxLength − MaxPromptLength</c> tokens (EOS is then cut, as it should be for a cut response). One deliberate
/// difference: the BOS token survives the prompt cut (BOS + the last MaxPromptLength − 1 tokens), where TRL's keep_end
/// drops the BOS it had prepended, feeding the model a sequence it never saw in pre-training.</para>
/// <para>Thread-safe if the tokenizer is.</para>
/// </remarks>
public sealed class PreferencePairBuilder
{
    /// <summary>TRL's default max_length.</summary>
    public const int DefaultMaxLength = 512;

    /// <summary>TRL's default max_prompt_length.</summary>
    public const int DefaultMaxPromptLength = 128;

    private readonly ITextTokenizer _tokenizer;
    private readonly int _eosId;

    /// <summary>Creates a builder.</summary>
    /// <exception cref="ArgumentException">The tokenizer has no EOS token.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The prompt limit leaves no room for a response.</exception>
    public PreferencePairBuilder(ITextTokenizer tokenizer, int maxLength = DefaultMaxLength, int maxPromptLength = DefaultMaxPromptLength)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPromptLength);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(maxLength, maxPromptLength);
        _tokenizer = tokenizer;
        _eosId = tokenizer.EosTokenId
            ?? throw new ArgumentException("The tokenizer has no EOS token; DPO responses end with EOS as TRL appends it.", nameof(tokenizer));
        MaxLength = maxLength;
        MaxPromptLength = maxPromptLength;
    }

    /// <summary>Upper bound on prompt + response ids of either sequence.</summary>
    public int MaxLength { get; }

    /// <summary>Prompt ids kept when a pair is too long.</summary>
    public int MaxPromptLength { get; }

    /// <summary>Tokenizes and truncates one example.</summary>
    public PreferencePair Build(PreferenceExample example)
    {
        ArgumentNullException.ThrowIfNull(example);
        var prompt = Encode(example.Prompt);
        if (prompt.Count == 0) throw new ArgumentException("The prompt encodes to no tokens.", nameof(example));
        var (chosen, chosenAligned) = Response(prompt, example.Prompt, example.Chosen);
        var (rejected, rejectedAligned) = Response(prompt, example.Prompt, example.Rejected);
        chosen.Add(_eosId);
        rejected.Add(_eosId);

        bool truncated = false;
        int longer = Math.Max(chosen.Count, rejected.Count);
        int[] promptIds = prompt.ToArray();
        if (promptIds.Length + longer > MaxLength && promptIds.Length > MaxPromptLength)
        {
            promptIds = KeepEnd(promptIds);
            truncated = true;
        }
        if (promptIds.Length + longer > MaxLength)
        {
            int keep = MaxLength - MaxPromptLength;
            truncated |= chosen.Count > keep || rejected.Count > keep;
            if (chosen.Count > keep) chosen.RemoveRange(keep, chosen.Count - keep);
            if (rejected.Count > keep) rejected.RemoveRange(keep, rejected.Count - keep);
        }
        return new PreferencePair(promptIds, chosen.ToArray(), rejected.ToArray(), truncated, chosenAligned && rejectedAligned);
    }

    /// <summary>The last MaxPromptLength ids, with the leading BOS kept in front of them.</summary>
    int[] KeepEnd(int[] prompt)
    {
        bool hasBos = _tokenizer.BosTokenId is int bos && prompt[0] == bos;
        int tail = hasBos ? MaxPromptLength - 1 : MaxPromptLength;
        var kept = prompt[^tail..];
        return hasBos ? [prompt[0], .. kept] : kept;
    }

    (List<int> Ids, bool Aligned) Response(IReadOnlyList<int> promptIds, string prompt, string response)
    {
        var full = Encode(prompt + response);
        int common = 0;
        while (common < promptIds.Count && common < full.Count && full[common] == promptIds[common]) common++;
        if (common == promptIds.Count && full.Count > common) return (full.Skip(common).ToList(), true);
        // The tokenizer merged across the boundary (or the response vanished into the prompt's last token): fall back to
        // TRL 0.7.2's separate encoding rather than move the boundary into the shared prompt.
        var alone = _tokenizer.Encode(response, addSpecialTokens: false).ToList();
        if (alone.Count == 0 && response.Length > 0) throw new ArgumentException("A response encodes to no tokens.", nameof(response));
        return (alone, false);
    }

    List<int> Encode(string text)
    {
        var ids = _tokenizer.Encode(text, addSpecialTokens: true).ToList();
        // Some post-processors append EOS themselves; the builder adds it to responses only, exactly once.
        if (ids.Count > 0 && ids[^1] == _eosId) ids.RemoveAt(ids.Count - 1);
        return ids;
    }
}
