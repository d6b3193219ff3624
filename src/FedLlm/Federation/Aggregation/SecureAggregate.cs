namespace FedLlm.Federation.Aggregation;

/// <summary>
/// The one update a secure-aggregation executor delivers in place of the round's individual updates: x + the survivors'
/// (weighted) mean Δ, under a fixed client id, with the number of survivors and the sum of their weights as metrics.
/// Decorators that need the sum rather than the mean (client-side DP clipping) recognise it here.
/// </summary>
public static class SecureAggregate
{
    /// <summary>The client id of the secure aggregate.</summary>
    public const string ClientId = "secure-aggregate";

    /// <summary>Metric: how many clients' inputs the aggregate holds.</summary>
    public const string ClientsMetric = "secagg_clients";

    /// <summary>Metric: Σ w_i, the weights of the mean (the number of clients when weights are equal).</summary>
    public const string WeightSumMetric = "secagg_weight_sum";

    /// <summary>Whether <paramref name="updates"/> is one secure aggregate.</summary>
    public static bool Is(IReadOnlyList<ClientUpdate> updates) => updates.Count == 1 && updates[0].ClientId == ClientId;

    /// <summary>Σ w_i of a secure aggregate.</summary>
    /// <exception cref="AggregationException">The metric is missing or not positive.</exception>
    public static double WeightSum(ClientUpdate aggregate) =>
        aggregate.Metrics?.GetValueOrDefault(WeightSumMetric) is > 0 and var w && double.IsFinite(w)
            ? w
            : throw new AggregationException($"the secure aggregate carries no positive '{WeightSumMetric}'", aggregate.ClientId);
}
