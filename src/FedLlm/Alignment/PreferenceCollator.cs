namespace FedLlm.Alignment;

/// <summary>
/// Chosen and rejected sequences of several pairs in one right-padded batch of shape [2·Pairs, SequenceLength]:
/// rows 0..Pairs−1 are prompt + chosen, rows Pairs..2·Pairs−1 prompt + rejected (TRL's concatenated_forward order).
/// </summary>
public sealed class PreferenceBatch
{
    internal PreferenceBatch(int pairs, int sequenceLength, long[] inputIds, long[] labels, long realTokens)
    {
        Pairs = pairs;
        SequenceLength = sequenceLength;
        InputIds = inputIds;
        Labels = labels;
        RealTokens = realTokens;
    }

    /// <summary>Number of pairs (half the rows).</summary>
    public int Pairs { get; }

    /// <summary>Length of the longest sequence (columns).</summary>
    public int SequenceLength { get; }

    /// <summary>[2·Pairs, SequenceLength], for creating tensors.</summary>
    public long[] Shape => [2L * Pairs, SequenceLength];

    /// <summary>Token ids, right-padded with the pad id.</summary>
    public long[] InputIds { get; }

    /// <summary>Response ids; −100 on prompt tokens and padding.</summary>
    public long[] Labels { get; }

    /// <summary>Non-padding tokens in the batch (for throughput).</summary>
    public long RealTokens { get; }
}

/// <summary>Pads <see cref="PreferencePair"/>s into one <see cref="PreferenceBatch"/>.</summary>
/// <remarks>
/// Right padding needs no attention mask: every real token precedes the padding, so causal attention never lets it see a
/// pad, and pad positions carry label −100. One batch for both responses halves the decoder calls and, with dropout on,
/// puts chosen and rejected under one random stream, as TRL does.
/// </remarks>
public sealed class PreferenceCollator
{
    /// <summary>The label that excludes a position from the log-probability.</summary>
    public const int IgnoreIndex = -100;

    /// <summary>Creates a collator that pads with <paramref name="padTokenId"/>.</summary>
    public PreferenceCollator(int padTokenId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(padTokenId);
        PadTokenId = padTokenId;
    }

    /// <summary>The id written into padding positions (never attended to, never labelled).</summary>
    public int PadTokenId { get; }

    /// <summary>Pads the pairs into one batch.</summary>
    /// <exception cref="ArgumentException">The list is empty.</exception>
    public PreferenceBatch Collate(IReadOnlyList<PreferencePair> pairs)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        if (pairs.Count == 0) throw new ArgumentException("Cannot collate an empty batch.", nameof(pairs));
        int n = pairs.Count;
        int columns = pairs.Max(p => Math.Max(p.ChosenLength, p.RejectedLength));
        var ids = new long[2L * n * columns];
        var labels = new long[2L * n * columns];
        Array.Fill(ids, PadTokenId);
        Array.Fill(labels, IgnoreIndex);
        long real = 0;
        for (int i = 0; i < n; i++)
        {
            real += Write(pairs[i].PromptIds, pairs[i].ChosenIds, i * columns);
            real += Write(pairs[i].PromptIds, pairs[i].RejectedIds, (n + i) * columns);
        }
        return new PreferenceBatch(n, columns, ids, labels, real);

        int Write(int[] prompt, int[] response, int offset)
        {
            for (int t = 0; t < prompt.Length; t++) ids[offset + t] = prompt[t];
            for (int t = 0; t < response.Length; t++)
            {
                ids[offset + prompt.Length + t] = response[t];
                labels[offset + prompt.Length + t] = response[t];
            }
            return prompt.Length + response.Length;
        }
    }
}
