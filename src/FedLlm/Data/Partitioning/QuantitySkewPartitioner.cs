using FedLlm.Runtime;

namespace FedLlm.Data.Partitioning;

/// <summary>
/// Quantity skew (NIID-Bench, Li et al. 2022): client sizes are proportions drawn from Dirichlet(α, ..., α); the
/// examples themselves are dealt at random, so each client's label mix stays close to the whole.
/// </summary>
/// <remarks>Sizes are largest-remainder rounded so they add up to the data set; a draw that leaves a client below
/// <see cref="DirichletDrawPartitioner.MinExamplesPerClient"/> is redrawn from the same stream, at most <see cref="DirichletDrawPartitioner.MaxAttempts"/> times.</remarks>
public sealed class QuantitySkewPartitioner(double alpha, int minExamplesPerClient = 1, int maxAttempts = 1000)
    : DirichletDrawPartitioner(alpha, minExamplesPerClient, maxAttempts)
{
    /// <inheritdoc />
    public override string Description => FormattableString.Invariant($"quantity skew(α={Alpha})");

    /// <inheritdoc />
    public override bool UsesLabels => false;

    private protected override string DrawName => "size draw";

    /// <summary>One shuffle of all examples, then per draw: Dirichlet proportions → sizes → consecutive blocks.</summary>
    private protected override Func<int[][]> Drawer(IReadOnlyList<string?> labels, int clientCount, SplitMix64 rng)
    {
        var order = Enumerable.Range(0, labels.Count).ToArray();
        rng.Shuffle(order);
        return () =>
        {
            var sizes = RandomSampling.Apportion(RandomSampling.Dirichlet(rng, Alpha, clientCount), order.Length);
            var clients = new int[clientCount][];
            var start = 0;
            for (var c = 0; c < clientCount; c++)
            {
                clients[c] = order[start..(start + sizes[c])];
                start += sizes[c];
            }
            return clients;
        };
    }
}
