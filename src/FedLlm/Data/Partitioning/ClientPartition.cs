namespace FedLlm.Data.Partitioning;

/// <summary>
/// Which examples each client holds: client i's indices into the data set, in the order it will see them.
/// </summary>
/// <remarks>The constructor checks the invariant every partitioner promises: each index in [0, exampleCount) is held by
/// exactly one client.</remarks>
public sealed class ClientPartition
{
    /// <summary>Creates a partition and checks that it covers every example exactly once.</summary>
    /// <exception cref="ArgumentException">An index is out of range, repeated, or missing.</exception>
    public ClientPartition(IReadOnlyList<int[]> clientIndices, int exampleCount)
    {
        ArgumentNullException.ThrowIfNull(clientIndices);
        var seen = new bool[exampleCount];
        var total = 0;
        for (var client = 0; client < clientIndices.Count; client++)
        {
            foreach (var index in clientIndices[client])
            {
                if ((uint)index >= (uint)exampleCount)
                    throw new ArgumentException($"Client {client} holds index {index}, outside [0, {exampleCount}).", nameof(clientIndices));
                if (seen[index])
                    throw new ArgumentException($"Example {index} is assigned twice (again to client {client}).", nameof(clientIndices));
                seen[index] = true;
                total++;
            }
        }

        if (total != exampleCount)
            throw new ArgumentException($"{exampleCount - total} of {exampleCount} examples are assigned to no client.", nameof(clientIndices));
        ClientIndices = clientIndices;
        ExampleCount = exampleCount;
    }

    /// <summary>Client i's example indices.</summary>
    public IReadOnlyList<int[]> ClientIndices { get; }

    /// <summary>Number of clients.</summary>
    public int ClientCount => ClientIndices.Count;

    /// <summary>Number of examples partitioned.</summary>
    public int ExampleCount { get; }

    /// <summary>Client i's examples, picked from the full list.</summary>
    public IReadOnlyList<T> Select<T>(IReadOnlyList<T> examples, int client)
    {
        ArgumentNullException.ThrowIfNull(examples);
        if (examples.Count != ExampleCount)
            throw new ArgumentException($"The partition is over {ExampleCount} examples, not {examples.Count}.", nameof(examples));
        return ClientIndices[client].Select(i => examples[i]).ToArray();
    }
}
