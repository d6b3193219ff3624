using FedLlm.Runtime;

namespace FedLlm.Data.Partitioning;

/// <summary>
/// IID: examples are shuffled and dealt out evenly, so every client's data looks like the whole (sizes differ by at
/// most one).
/// </summary>
/// <remarks>
/// <para><see cref="Strided"/> reproduces OpenFedLLM's split (federated_learning/split_dataset.py): client i gets
/// <c>dataset.shard(N, i)</c>, which with its pinned datasets 2.13 (contiguous=False) means rows j with j mod N = i.
/// OpenFedLLM shuffles first with HF's seed-2023 NumPy permutation, which cannot be reproduced bit for bit here; the
/// shuffle here is SplitMix64's, and <see cref="Shuffle"/> = false keeps the caller's order (e.g. rows already
/// shuffled elsewhere) so the strided rule alone is applied.</para>
/// <para>Otherwise clients get contiguous blocks of the shuffled order, the first (n mod N) one example more.</para>
/// </remarks>
/// <param name="strided">Deal rows j mod N = i (OpenFedLLM) instead of contiguous blocks.</param>
/// <param name="shuffle">Shuffle with the seed first.</param>
public sealed class IidPartitioner(bool strided = false, bool shuffle = true) : IPartitioner
{
    /// <summary>Whether rows are dealt round-robin as OpenFedLLM's <c>shard(N, i)</c> does.</summary>
    public bool Strided { get; } = strided;

    /// <summary>Whether the order is shuffled with the seed before dealing.</summary>
    public bool Shuffle { get; } = shuffle;

    /// <inheritdoc />
    public string Description => (Strided ? "iid, strided shard(N, i)" : "iid") + (Shuffle ? "" : ", unshuffled");

    /// <inheritdoc />
    public bool UsesLabels => false;

    /// <inheritdoc />
    public ClientPartition Partition(IReadOnlyList<string?> labels, int clientCount, ulong seed)
    {
        PartitionerInput.Check(labels, clientCount);
        var order = Enumerable.Range(0, labels.Count).ToArray();
        if (Shuffle) new SplitMix64(seed).Shuffle(order);

        var clients = new int[clientCount][];
        if (Strided)
        {
            for (var c = 0; c < clientCount; c++)
                clients[c] = order.Where((_, j) => j % clientCount == c).ToArray();
        }
        else
        {
            var sizes = RandomSampling.Apportion(Enumerable.Repeat(1.0, clientCount).ToArray(), order.Length);
            var start = 0;
            for (var c = 0; c < clientCount; c++)
            {
                clients[c] = order[start..(start + sizes[c])];
                start += sizes[c];
            }
        }

        return new ClientPartition(clients, labels.Count);
    }
}
