namespace FedLlm.Alignment;

/// <summary>One tokenized preference pair: a shared prompt and two responses, unpadded.</summary>
/// <remarks>
/// The model sees <c>prompt + chosen</c> and <c>prompt + rejected</c>; only response tokens carry labels, so a
/// sequence's log-probability is the sum over the response (EOS included unless truncation cut it). The arrays are owned
/// by the pair; do not modify them.
/// </remarks>
public sealed class PreferencePair
{
    /// <summary>Creates a pair from ids.</summary>
    /// <exception cref="ArgumentException">The prompt or a response is empty: the first response token needs a prompt
    /// position to be predicted from, and an empty response has no log-probability to compare.</exception>
    public PreferencePair(int[] promptIds, int[] chosenIds, int[] rejectedIds, bool truncated = false, bool boundaryAligned = true)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        ArgumentNullException.ThrowIfNull(chosenIds);
        ArgumentNullException.ThrowIfNull(rejectedIds);
        if (promptIds.Length == 0) throw new ArgumentException("The prompt has no tokens.", nameof(promptIds));
        if (chosenIds.Length == 0) throw new ArgumentException("The chosen response has no tokens.", nameof(chosenIds));
        if (rejectedIds.Length == 0) throw new ArgumentException("The rejected response has no tokens.", nameof(rejectedIds));
        PromptIds = promptIds;
        ChosenIds = chosenIds;
        RejectedIds = rejectedIds;
        Truncated = truncated;
        BoundaryAligned = boundaryAligned;
    }

    /// <summary>Prompt ids, BOS first when the tokenizer adds one.</summary>
    public int[] PromptIds { get; }

    /// <summary>Ids of the preferred response, ending with EOS unless truncated.</summary>
    public int[] ChosenIds { get; }

    /// <summary>Ids of the dispreferred response, ending with EOS unless truncated.</summary>
    public int[] RejectedIds { get; }

    /// <summary>Whether prompt or response tokens were removed to fit the length limits.</summary>
    public bool Truncated { get; }

    /// <summary>
    /// False when the tokenizer merged a token across the prompt/response boundary, so the responses had to be encoded on
    /// their own (see <see cref="PreferencePairBuilder"/>); callers can count such pairs.
    /// </summary>
    public bool BoundaryAligned { get; }

    /// <summary>Length of prompt + chosen.</summary>
    public int ChosenLength => PromptIds.Length + ChosenIds.Length;

    /// <summary>Length of prompt + rejected.</summary>
    public int RejectedLength => PromptIds.Length + RejectedIds.Length;
}
