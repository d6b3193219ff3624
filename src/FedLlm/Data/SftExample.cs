namespace FedLlm.Data;

/// <summary>One tokenized SFT example: ids and per-position labels, unpadded.</summary>
/// <remarks>
/// Labels are aligned with <see cref="InputIds"/> (not shifted), as in Hugging Face: the model shifts them when it
/// computes the next-token loss. The arrays are owned by the example; do not modify them.
/// </remarks>
public sealed class SftExample
{
    /// <summary>Creates an example; <paramref name="labels"/> must be as long as <paramref name="inputIds"/>.</summary>
    public SftExample(int[] inputIds, int[] labels, int promptLength, bool truncated, bool boundaryAligned)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        ArgumentNullException.ThrowIfNull(labels);
        if (inputIds.Length != labels.Length)
            throw new ArgumentException($"{labels.Length} labels for {inputIds.Length} ids.", nameof(labels));
        ArgumentOutOfRangeException.ThrowIfNegative(promptLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(promptLength, inputIds.Length);
        InputIds = inputIds;
        Labels = labels;
        PromptLength = promptLength;
        Truncated = truncated;
        BoundaryAligned = boundaryAligned;
    }

    /// <summary>Token ids: BOS (if the tokenizer adds one), prompt, response, EOS (unless the response was cut).</summary>
    public int[] InputIds { get; }

    /// <summary><see cref="SftExampleBuilder.IgnoreIndex"/> on every prompt token, else the token id.</summary>
    public int[] Labels { get; }

    /// <summary>Number of leading tokens masked from the loss.</summary>
    public int PromptLength { get; }

    /// <summary>Whether tokens were removed to fit the maximum sequence length.</summary>
    public bool Truncated { get; }

    /// <summary>
    /// Whether the prompt's own tokens are a prefix of the full text's tokens, so the loss boundary falls exactly between
    /// two tokens. False only when a tokenizer merges across the end of the response marker (see <see cref="SftExampleBuilder"/>).
    /// </summary>
    public bool BoundaryAligned { get; }

    /// <summary>Number of tokens.</summary>
    public int Length => InputIds.Length;
}
