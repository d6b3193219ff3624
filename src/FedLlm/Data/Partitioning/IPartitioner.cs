namespace FedLlm.Data.Partitioning;

/// <summary>Splits a data set among clients, as federated experiments simulate data silos.</summary>
/// <remarks>
/// <para>The input is one label per example (null where an example has none); partitioners that ignore labels use only
/// the count. The result depends only on the labels, the client count and the seed.</para>
/// <para>Implementations are immutable and thread-safe.</para>
/// </remarks>
public interface IPartitioner
{
    /// <summary>A short description for reports, e.g. "dirichlet(α=0.5)".</summary>
    string Description { get; }

    /// <summary>Whether the split reads the labels (and so needs every example to have one).</summary>
    bool UsesLabels { get; }

    /// <summary>Assigns every example to exactly one of <paramref name="clientCount"/> clients.</summary>
    /// <exception cref="ArgumentException">The labels are needed and some are null, or the split is impossible.</exception>
    ClientPartition Partition(IReadOnlyList<string?> labels, int clientCount, ulong seed);
}

/// <summary>Helpers shared by the partitioners.</summary>
internal static class PartitionerInput
{
    /// <summary>Indices grouped by label, labels in ordinal order so the result does not depend on file order of first sight.</summary>
    public static SortedDictionary<string, List<int>> ByLabel(IReadOnlyList<string?> labels)
    {
        var groups = new SortedDictionary<string, List<int>>(StringComparer.Ordinal);
        var missing = 0;
        for (var i = 0; i < labels.Count; i++)
        {
            if (labels[i] is not { } label)
            {
                missing++;
                continue;
            }

            if (!groups.TryGetValue(label, out var list)) groups[label] = list = [];
            list.Add(i);
        }

        if (missing > 0)
            throw new ArgumentException(
                $"{missing} of {labels.Count} examples have no label; a label-based partition needs one per example (name a label column).",
                nameof(labels));
        return groups;
    }

    public static void Check(IReadOnlyList<string?> labels, int clientCount)
    {
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(clientCount);
    }
}
