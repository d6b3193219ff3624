using FedLlm.Runtime;

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
/// <para>A draw that leaves a client with fewer than <see cref="DirichletDrawPartitioner.MinExamplesPerClient"/> examples is redrawn (as NIID-Bench
/// does with its minimum of 10), at most <see cref="DirichletDrawPartitioner.MaxAttempts"/> times, continuing the same random stream, so the
/// result is still a function of the seed. This conditions the distribution on the minimum; keep it small.</para>
/// <para>Labels can be any category: FinGPT's sentiment, MathInstruct's <c>source</c>, or any named column.</para>
/// </remarks>
public sealed class DirichletPartitioner(double alpha, int minExamplesPerClient = 1, int maxAttempts = 1000)
    : DirichletDrawPartitioner(alpha, minExamplesPerClient, maxAttempts)
{
    /// <inheritdoc />
    public override string Description => FormattableString.Invariant($"dirichlet(α={Alpha})");

    /// <inheritdoc />
    public override bool UsesLabels => true;

    private protected override string DrawName => "draw";

    /// <summary>Per draw, for each label in ordinal order: shuffle its examples, draw proportions, cut into blocks.</summary>
    private protected override Func<int[][]> Drawer(IReadOnlyList<string?> labels, int clientCount, SplitMix64 rng)
    {
        var groups = PartitionerInput.ByLabel(labels);
        return () =>
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
            return clients.Select(c => c.ToArray()).ToArray();
        };
    }

    /// <summary>Mixes labels within a client, so its local batches are not label-sorted.</summary>
    private protected override void Finish(int[][] clients, SplitMix64 rng)
    {
        foreach (var c in clients) rng.Shuffle(c);
    }
}
