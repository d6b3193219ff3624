namespace FedLlm.Data;

/// <summary>Several short SFT examples concatenated into one sequence, and where each starts.</summary>
/// <param name="Sequence">The packed ids and labels; its <see cref="SftExample.PromptLength"/> is the first example's.</param>
/// <param name="DocumentStarts">Offset of each example in the sequence, ascending, starting with 0.</param>
public sealed record PackedSftExample(SftExample Sequence, IReadOnlyList<int> DocumentStarts)
{
    /// <summary>
    /// Position ids that restart at 0 for each example, for a model that takes them (so rotary positions match the
    /// unpacked example); the current trainer uses 0..T-1.
    /// </summary>
    public int[] PositionIds()
    {
        var positions = new int[Sequence.Length];
        for (var d = 0; d < DocumentStarts.Count; d++)
        {
            var end = d + 1 < DocumentStarts.Count ? DocumentStarts[d + 1] : positions.Length;
            for (var t = DocumentStarts[d]; t < end; t++) positions[t] = t - DocumentStarts[d];
        }

        return positions;
    }

    /// <summary>
    /// The block-diagonal causal mask: row t may attend to column s when s ≤ t and both are in the same example.
    /// Row-major [T, T]; for a trainer that supports per-sequence masks.
    /// </summary>
    public bool[] BlockDiagonalCausalMask()
    {
        var n = Sequence.Length;
        var document = new int[n];
        for (var d = 0; d < DocumentStarts.Count; d++)
            for (var t = DocumentStarts[d]; t < (d + 1 < DocumentStarts.Count ? DocumentStarts[d + 1] : n); t++) document[t] = d;
        var mask = new bool[n * n];
        for (var t = 0; t < n; t++)
            for (var s = DocumentStarts[document[t]]; s <= t; s++) mask[t * n + s] = true;
        return mask;
    }
}

/// <summary>
/// Packs short SFT examples into sequences of at most a maximum length, so fewer tokens are padding.
/// </summary>
/// <remarks>
/// <para><b>Algorithm.</b> Greedy in order (next fit): an example joins the current sequence if it fits, else starts a
/// new one. Order is kept, so the caller's shuffle still decides which examples share a batch; an example longer than the
/// maximum is never produced here (the builder truncates first) and is refused.</para>
/// <para><b>Attention.</b> FedLlm's trainer uses plain causal attention over the whole sequence, so with packing a token
/// can attend to the examples before it in the same sequence. That is the usual approximation (TRL's
/// <c>packing=True</c> before its padding-free mode, and the original Alpaca/Llama recipes): the labels stay exactly the
/// unpacked ones, so the loss is still on responses only, and the prediction across a boundary is never trained on
/// because each example's first tokens are prompt tokens (label -100). What changes is the context the later examples
/// see. <see cref="PackedSftExample.DocumentStarts"/>, <see cref="PackedSftExample.PositionIds"/> and
/// <see cref="PackedSftExample.BlockDiagonalCausalMask"/> give what an exact, block-diagonal implementation needs.</para>
/// </remarks>
public static class SftPacker
{
    /// <summary>Packs the examples in order.</summary>
    /// <param name="examples">Tokenized examples, each at most <paramref name="maxLength"/> long.</param>
    /// <param name="maxLength">The longest packed sequence.</param>
    /// <exception cref="ArgumentException">An example is longer than <paramref name="maxLength"/>.</exception>
    public static IEnumerable<PackedSftExample> Pack(IEnumerable<SftExample> examples, int maxLength)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLength);
        return PackIterator(examples, maxLength);
    }

    private static IEnumerable<PackedSftExample> PackIterator(IEnumerable<SftExample> examples, int maxLength)
    {
        var current = new List<SftExample>();
        var length = 0;
        foreach (var example in examples)
        {
            if (example.Length > maxLength)
                throw new ArgumentException($"An example of {example.Length} tokens does not fit a packed length of {maxLength}; truncate first.", nameof(examples));
            if (length + example.Length > maxLength && current.Count > 0)
            {
                yield return Join(current);
                current.Clear();
                length = 0;
            }

            current.Add(example);
            length += example.Length;
        }

        if (current.Count > 0) yield return Join(current);
    }

    private static PackedSftExample Join(List<SftExample> parts)
    {
        var ids = new int[parts.Sum(p => p.Length)];
        var labels = new int[ids.Length];
        var starts = new int[parts.Count];
        var offset = 0;
        for (var i = 0; i < parts.Count; i++)
        {
            starts[i] = offset;
            parts[i].InputIds.CopyTo(ids, offset);
            parts[i].Labels.CopyTo(labels, offset);
            offset += parts[i].Length;
        }

        var sequence = new SftExample(ids, labels, parts[0].PromptLength, parts.Any(p => p.Truncated), parts.All(p => p.BoundaryAligned));
        return new PackedSftExample(sequence, starts);
    }
}
