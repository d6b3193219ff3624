using FedLlm.Federation.LowRank;
using static TorchSharp.torch;

namespace FedLlm.Federation.Personalization;

/// <summary>
/// Adds "payload_bytes_received" to a round's record when any client reported <see cref="PayloadBytes.MetricName"/>:
/// the bytes the round's updates need when each sends only what it changed (its full update size where it reported
/// nothing). Rounds where no client reported it are left as they are.
/// </summary>
public sealed class PayloadAccounting(IFederatedStrategy inner) : DelegatingStrategy(inner)
{
    /// <summary>The metric's name in <see cref="RoundRecord.AggregationMetrics"/>.</summary>
    public const string MetricName = "payload_bytes_received";

    double? lastPayload;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        var aggregated = base.Aggregate(round, global, updates);
        lastPayload = updates.Any(u => u.Metrics?.ContainsKey(PayloadBytes.MetricName) == true)
            ? updates.Sum(u => u.Metrics?.GetValueOrDefault(PayloadBytes.MetricName, u.Bytes) ?? u.Bytes)
            : null;
        return aggregated;
    }

    /// <inheritdoc/>
    public override RoundRecord Annotate(RoundRecord record)
    {
        record = base.Annotate(record);
        if (lastPayload is not { } payload) return record;
        lastPayload = null;
        return AggregationMetrics.With(record, new Dictionary<string, double> { [MetricName] = payload });
    }
}
