namespace FedLlm.Federation.LowRank;

/// <summary>Adds metrics to a round's <see cref="RoundRecord.AggregationMetrics"/>.</summary>
internal static class AggregationMetrics
{
    /// <summary><paramref name="record"/> with <paramref name="metrics"/> added (a later value for a name wins).</summary>
    public static RoundRecord With(RoundRecord record, IReadOnlyDictionary<string, double> metrics)
    {
        if (metrics.Count == 0) return record;
        var merged = new Dictionary<string, double>(record.AggregationMetrics ?? new Dictionary<string, double>(), StringComparer.Ordinal);
        foreach (var (name, value) in metrics) merged[name] = value;
        return record with { AggregationMetrics = merged };
    }
}
