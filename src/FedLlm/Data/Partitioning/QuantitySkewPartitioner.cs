using FedLlm.Defaults;

namespace FedLlm.Data.Partitioning;

/// <summary>
/// Quantity skew (NIID-Bench, Li et al. 2022): client sizes are proportions drawn from Dirichlet(α, ..., α); the
/// examples themselves are dealt at random, so each client's label mix stays close to the whole.
/// </summary>
/// <remarks>Sizes are largest-remainder rounded so they add up to the data set; a draw that leaves a client below
/// <see cref="MinExamplesPerClient"/> is redrawn from the same stream, at most <see cref="MaxAttempts"/> times.</remarks>
public sealed class QuantitySkewPartitioner : IPartitioner
{
    /// <summary>Creates the partitioner.</summary>
    /// <param name="alpha">Concentration α &gt; 0; small α gives very unequal sizes.</param>
    /// <param name="minExamplesPerClient">Redraw until every client holds at least this many examples.</param>
    /// <param name="maxAttempts">Give up after this many draws.</param>
    public QuantitySkewPartitioner(double alpha, int minExamplesPerClient = 1, int maxAttempts = 1000)
    {
        if (!(alpha > 0) || double.IsInfinity(alpha)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must be a positive finite number.");
        ArgumentOutOfRangeException.ThrowIfNegative(minExamplesPerClient);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxAttempts);
        Alpha = alpha;
        MinExamplesPerClient = minExamplesPerClient;
        MaxAttempts = maxAttempts;
    }

    /// <summary>The concentration α.</summary>
    public double Alpha { get; }

    /// <summary>The fewest examples a client may end with.</summary>
    public int MinExamplesPerClient { get; }

    /// <summary>How many draws are tried before giving up.</summary>
    public int MaxAttempts { get; }

    /// <inheritdoc />
    public string Description => FormattableString.Invariant($"quantity skew(α={Alpha})");

    /// <inheritdoc />
    public bool UsesLabels => false;

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">No draw in <see cref="MaxAttempts"/> gave every client the minimum.</exception>
    public ClientPartition Partition(IReadOnlyList<string?> labels, int clientCount, ulong seed)
    {
        PartitionerInput.Check(labels, clientCount);
        if ((long)MinExamplesPerClient * clientCount > labels.Count)
            throw new ArgumentException($"{labels.Count} examples cannot give {clientCount} clients {MinExamplesPerClient} each.", nameof(labels));
        var rng = new SplitMix64(seed);
        var order = Enumerable.Range(0, labels.Count).ToArray();
        rng.Shuffle(order);
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            var sizes = RandomSampling.Apportion(RandomSampling.Dirichlet(rng, Alpha, clientCount), order.Length);
            if (sizes.Any(s => s < MinExamplesPerClient)) continue;
            var clients = new int[clientCount][];
            var start = 0;
            for (var c = 0; c < clientCount; c++)
            {
                clients[c] = order[start..(start + sizes[c])];
                start += sizes[c];
            }

            return new ClientPartition(clients, labels.Count);
        }

        throw new InvalidOperationException(
            $"No Dirichlet(α={Alpha}) size draw in {MaxAttempts} gave each of {clientCount} clients at least {MinExamplesPerClient} of {labels.Count} examples; " +
            "use fewer clients, a larger α or a smaller minimum.");
    }
}
