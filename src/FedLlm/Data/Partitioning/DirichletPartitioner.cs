using FedLlm.Defaults;

namespace FedLlm.Data.Partitioning;

/// <summary>
/// Label skew by a Dirichlet prior (Hsu, Qi and Brown 2019, "Measuring the effects of non-identical data distribution
/// for federated visual classification"): each label's examples are split among the clients in proportions drawn from
/// Dirichlet(α, ..., α).
/// </summary>
/// <remarks>
/// <para>Small α (0.1) gives each client a few dominant labels; large α (100) approaches IID. For each label in ordinal
/// order, its examples are shuffled, proportions p ~ Dir(α·1_N) are drawn, and the examples are cut into blocks of
/// largest-remainder rounded sizes p·n_label, so every example goes to exactly one client.</para>
/// <para>A draw that leaves a client with fewer than <see cref="MinExamplesPerClient"/> examples is redrawn (as NIID-Bench
/// does with its minimum of 10), at most <see cref="MaxAttempts"/> times, continuing the same random stream, so the
/// result is still a function of the seed. This conditions the distribution on the minimum; keep it small.</para>
/// <para>Labels can be any category: FinGPT's sentiment, MathInstruct's <c>source</c>, or any named column.</para>
/// </remarks>
public sealed class DirichletPartitioner : IPartitioner
{
    /// <summary>Creates the partitioner.</summary>
    /// <param name="alpha">Concentration α &gt; 0.</param>
    /// <param name="minExamplesPerClient">Redraw until every client holds at least this many examples.</param>
    /// <param name="maxAttempts">Give up after this many draws.</param>
    public DirichletPartitioner(double alpha, int minExamplesPerClient = 1, int maxAttempts = 1000)
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
    public string Description => FormattableString.Invariant($"dirichlet(α={Alpha})");

    /// <inheritdoc />
    public bool UsesLabels => true;

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">No draw in <see cref="MaxAttempts"/> gave every client the minimum.</exception>
    public ClientPartition Partition(IReadOnlyList<string?> labels, int clientCount, ulong seed)
    {
        PartitionerInput.Check(labels, clientCount);
        var groups = PartitionerInput.ByLabel(labels);
        if ((long)MinExamplesPerClient * clientCount > labels.Count)
            throw new ArgumentException($"{labels.Count} examples cannot give {clientCount} clients {MinExamplesPerClient} each.", nameof(labels));
        var rng = new SplitMix64(seed);
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            var clients = Enumerable.Range(0, clientCount).Select(_ => new List<int>()).ToArray();
            foreach (var indices in groups.Values)
            {
                var shuffled = indices.ToArray();
                rng.Shuffle(shuffled);
                var counts = RandomSampling.Apportion(RandomSampling.Dirichlet(rng, Alpha, clientCount), shuffled.Length);
                var start = 0;
                for (var c = 0; c < clientCount; c++)
                {
                    clients[c].AddRange(shuffled.AsSpan(start, counts[c]));
                    start += counts[c];
                }
            }

            if (clients.All(c => c.Count >= MinExamplesPerClient))
            {
                // Mix labels within a client, so its local batches are not label-sorted.
                foreach (var c in clients) rng.Shuffle(c);
                return new ClientPartition(clients.Select(c => c.ToArray()).ToArray(), labels.Count);
            }
        }

        throw new InvalidOperationException(
            $"No Dirichlet(α={Alpha}) draw in {MaxAttempts} gave each of {clientCount} clients at least {MinExamplesPerClient} of {labels.Count} examples; " +
            "use fewer clients, a larger α or a smaller minimum.");
    }
}
