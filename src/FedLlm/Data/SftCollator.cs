using FedLlm.Tokenization;

namespace FedLlm.Data;

/// <summary>
/// A padded batch as flat row-major arrays of shape <see cref="Shape"/> = [BatchSize, SequenceLength],
/// ready for <c>torch.tensor(array, shape)</c> (int64, as embedding lookups and cross-entropy targets need).
/// </summary>
public sealed class SftBatch
{
    internal SftBatch(int batchSize, int sequenceLength, long[] inputIds, long[] attentionMask, long[] labels)
    {
        BatchSize = batchSize;
        SequenceLength = sequenceLength;
        InputIds = inputIds;
        AttentionMask = attentionMask;
        Labels = labels;
    }

    /// <summary>Number of examples (rows).</summary>
    public int BatchSize { get; }

    /// <summary>Length of the longest example (columns).</summary>
    public int SequenceLength { get; }

    /// <summary>[BatchSize, SequenceLength], for creating tensors.</summary>
    public long[] Shape => [BatchSize, SequenceLength];

    /// <summary>Token ids, right-padded with the pad id.</summary>
    public long[] InputIds { get; }

    /// <summary>1 on real tokens, 0 on padding.</summary>
    public long[] AttentionMask { get; }

    /// <summary>Labels, <see cref="SftExampleBuilder.IgnoreIndex"/> on the prompt and on padding.</summary>
    public long[] Labels { get; }

    /// <summary>Tokens that count towards the loss (labels other than the ignore index).</summary>
    /// <remarks>For weighting micro-batches and clients by trained tokens rather than by examples.</remarks>
    public int LossTokenCount => Labels.Count(l => l != SftExampleBuilder.IgnoreIndex);
}

/// <summary>Pads <see cref="SftExample"/>s to the longest in the batch (right padding, as OpenFedLLM's tokenizer sets).</summary>
public sealed class SftCollator
{
    /// <summary>Creates a collator that pads with <paramref name="padTokenId"/>.</summary>
    public SftCollator(int padTokenId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(padTokenId);
        PadTokenId = padTokenId;
    }

    /// <summary>Creates a collator that pads with the tokenizer's <see cref="ITextTokenizer.PadTokenId"/>.</summary>
    /// <exception cref="ArgumentException">The tokenizer has no pad id.</exception>
    public SftCollator(ITextTokenizer tokenizer)
        : this((tokenizer ?? throw new ArgumentNullException(nameof(tokenizer))).PadTokenId
               ?? throw new ArgumentException("The tokenizer has no pad, unk or EOS token to pad with.", nameof(tokenizer)))
    {
    }

    /// <summary>The id written into padding positions (masked out by attention and labels, so its value never matters to the loss).</summary>
    public int PadTokenId { get; }

    /// <summary>Pads the examples into one batch.</summary>
    /// <exception cref="ArgumentException">The list is empty.</exception>
    public SftBatch Collate(IReadOnlyList<SftExample> examples)
    {
        ArgumentNullException.ThrowIfNull(examples);
        if (examples.Count == 0) throw new ArgumentException("Cannot collate an empty batch.", nameof(examples));

        var rows = examples.Count;
        var columns = examples.Max(e => e.Length);
        var ids = new long[rows * columns];
        var mask = new long[rows * columns];
        var labels = new long[rows * columns];
        Array.Fill(ids, PadTokenId);
        Array.Fill(labels, SftExampleBuilder.IgnoreIndex);
        for (var row = 0; row < rows; row++)
        {
            var example = examples[row];
            var offset = row * columns;
            for (var t = 0; t < example.Length; t++)
            {
                ids[offset + t] = example.InputIds[t];
                mask[offset + t] = 1;
                labels[offset + t] = example.Labels[t];
            }
        }

        return new SftBatch(rows, columns, ids, mask, labels);
    }
}
