using FedLlm.Runtime;

namespace FedLlm.Data.Partitioning;

/// <summary>
/// Pathological label skew: every client holds exactly k labels (McMahan et al. 2017's shards; NIID-Bench's "#C=k").
/// </summary>
/// <remarks>
/// <para>The labels are put on a circle in a seeded random order; client i holds the k consecutive positions starting
/// at i·k (mod the number of labels C). So each client's k labels are distinct (k ≤ C), and when N·k ≥ C every label
/// has at least one holder and therefore no example is left out; fewer slots than labels is refused. Each label's
/// examples are shuffled and dealt evenly (largest remainder) among the clients that hold it.</para>
/// <para>A client can end with no examples only if one of its labels has fewer examples than holders.</para>
/// </remarks>
public sealed class ShardPartitioner : IPartitioner
{
    /// <summary>Creates the partitioner.</summary>
    /// <param name="labelsPerClient">k ≥ 1, the labels each client holds.</param>
    public ShardPartitioner(int labelsPerClient)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(labelsPerClient);
        LabelsPerClient = labelsPerClient;
    }

    /// <summary>k, the labels each client holds.</summary>
    public int LabelsPerClient { get; }

    /// <inheritdoc />
    public string Description => $"shards({LabelsPerClient} label(s) per client)";

    /// <inheritdoc />
    public bool UsesLabels => true;

    /// <inheritdoc />
    public ClientPartition Partition(IReadOnlyList<string?> labels, int clientCount, ulong seed)
    {
        PartitionerInput.Check(labels, clientCount);
        var groups = PartitionerInput.ByLabel(labels);
        var labelCount = groups.Count;
        if (labelCount == 0) return new ClientPartition(Enumerable.Range(0, clientCount).Select(_ => Array.Empty<int>()).ToArray(), 0);
        if (LabelsPerClient > labelCount)
            throw new ArgumentException($"{LabelsPerClient} labels per client, but the data has only {labelCount}.", nameof(labels));
        if ((long)LabelsPerClient * clientCount < labelCount)
            throw new ArgumentException(
                $"{clientCount} clients × {LabelsPerClient} labels cannot cover {labelCount} labels; examples of the rest would belong to no client.",
                nameof(labels));

        var rng = new SplitMix64(seed);
        var circle = groups.Keys.ToArray();
        rng.Shuffle(circle);
        var holders = circle.ToDictionary(label => label, _ => new List<int>(), StringComparer.Ordinal);
        for (var c = 0; c < clientCount; c++)
            for (var j = 0; j < LabelsPerClient; j++)
                holders[circle[(c * LabelsPerClient + j) % labelCount]].Add(c);

        var clients = Enumerable.Range(0, clientCount).Select(_ => new List<int>()).ToArray();
        foreach (var (label, indices) in groups)
        {
            var shuffled = indices.ToArray();
            rng.Shuffle(shuffled);
            var owners = holders[label];
            var counts = RandomSampling.Apportion(Enumerable.Repeat(1.0, owners.Count).ToArray(), shuffled.Length);
            var start = 0;
            for (var o = 0; o < owners.Count; o++)
            {
                clients[owners[o]].AddRange(shuffled.AsSpan(start, counts[o]));
                start += counts[o];
            }
        }

        foreach (var c in clients) rng.Shuffle(c);
        return new ClientPartition(clients.Select(c => c.ToArray()).ToArray(), labels.Count);
    }
}
