using FedLlm.Data.Partitioning;

namespace FedLlm.Data.Statistics;

/// <summary>What one client holds.</summary>
/// <param name="Client">The client's index.</param>
/// <param name="Examples">Number of examples.</param>
/// <param name="LabelCounts">Examples per label, over <see cref="PartitionReport.Labels"/> (zeros included); empty when unlabeled.</param>
/// <param name="Tokens">Tokens over the client's examples, when token counts were given.</param>
/// <param name="LabelDistance">Total variation distance between the client's label distribution and the whole set's
/// (0 = same mix, 1 = disjoint labels); null when unlabeled or empty.</param>
public sealed record ClientStatistics(int Client, int Examples, IReadOnlyList<int> LabelCounts, long? Tokens, double? LabelDistance);

/// <summary>Per-client statistics of a partition: sizes, label histograms and tokens, for a table or a chart.</summary>
public sealed class PartitionReport
{
    private PartitionReport(string description, IReadOnlyList<string> labels, IReadOnlyList<int> totalLabelCounts, IReadOnlyList<ClientStatistics> clients)
    {
        Description = description;
        Labels = labels;
        TotalLabelCounts = totalLabelCounts;
        Clients = clients;
    }

    /// <summary>The partition scheme, e.g. "dirichlet(α=0.5)".</summary>
    public string Description { get; }

    /// <summary>The labels, most frequent first (ties in ordinal order); empty when the examples are unlabeled.</summary>
    public IReadOnlyList<string> Labels { get; }

    /// <summary>Examples per label over the whole set, aligned with <see cref="Labels"/>.</summary>
    public IReadOnlyList<int> TotalLabelCounts { get; }

    /// <summary>One entry per client, in client order.</summary>
    public IReadOnlyList<ClientStatistics> Clients { get; }

    /// <summary>Examples over all clients.</summary>
    public int TotalExamples => Clients.Sum(c => c.Examples);

    /// <summary>Tokens over all clients, when token counts were given.</summary>
    public long? TotalTokens => Clients.Count > 0 && Clients[0].Tokens is null ? null : Clients.Sum(c => c.Tokens ?? 0);

    /// <summary>Computes the report.</summary>
    /// <param name="partition">The partition.</param>
    /// <param name="labels">One label per example, or all null for unlabeled data.</param>
    /// <param name="tokenCounts">Tokens per example, or null.</param>
    /// <param name="description">The scheme's description.</param>
    /// <exception cref="ArgumentException">A list is not one entry per example, or only some examples have labels.</exception>
    public static PartitionReport Compute(ClientPartition partition, IReadOnlyList<string?> labels, IReadOnlyList<int>? tokenCounts, string description)
    {
        ArgumentNullException.ThrowIfNull(partition);
        ArgumentNullException.ThrowIfNull(labels);
        if (labels.Count != partition.ExampleCount)
            throw new ArgumentException($"{labels.Count} labels for {partition.ExampleCount} examples.", nameof(labels));
        if (tokenCounts is not null && tokenCounts.Count != partition.ExampleCount)
            throw new ArgumentException($"{tokenCounts.Count} token counts for {partition.ExampleCount} examples.", nameof(tokenCounts));

        var labeled = labels.Count(l => l is not null);
        if (labeled != 0 && labeled != labels.Count)
            throw new ArgumentException($"Only {labeled} of {labels.Count} examples have labels.", nameof(labels));

        var totals = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var label in labels)
            if (label is not null) totals[label] = totals.GetValueOrDefault(label) + 1;
        var ordered = totals.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Key).ToArray();
        var position = ordered.Select((l, i) => (l, i)).ToDictionary(x => x.l, x => x.i, StringComparer.Ordinal);
        var totalCounts = ordered.Select(l => totals[l]).ToArray();

        var clients = new ClientStatistics[partition.ClientCount];
        for (var c = 0; c < clients.Length; c++)
        {
            var indices = partition.ClientIndices[c];
            var counts = new int[ordered.Length];
            foreach (var i in indices)
                if (labels[i] is { } label) counts[position[label]]++;
            long? tokens = tokenCounts is null ? null : indices.Sum(i => (long)tokenCounts[i]);
            double? distance = ordered.Length == 0 || indices.Length == 0
                ? null
                : 0.5 * counts.Select((n, k) => Math.Abs((double)n / indices.Length - (double)totalCounts[k] / labels.Count)).Sum();
            clients[c] = new ClientStatistics(c, indices.Length, counts, tokens, distance);
        }

        return new PartitionReport(description, ordered, totalCounts, clients);
    }
}
