namespace FedLlm.Federation;

/// <summary>One client's evaluation of the global adapter on its own data (Flower's EvaluateRes).</summary>
/// <param name="ClientId">Who evaluated.</param>
/// <param name="ExampleCount">How many examples the metrics are over (the weight of the client's metrics).</param>
/// <param name="Metrics">Named scores ("loss", "exact_match" …).</param>
public sealed record ClientEvaluation(string ClientId, long ExampleCount, IReadOnlyDictionary<string, double> Metrics)
{
    /// <summary>Each metric's mean over the clients that report it, weighted by their example counts.</summary>
    public static IReadOnlyDictionary<string, double> WeightedMean(IReadOnlyList<ClientEvaluation> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        return results.SelectMany(r => r.Metrics.Keys).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)
            .ToDictionary(key => key, key =>
            {
                var reporting = results.Where(r => r.Metrics.ContainsKey(key) && r.ExampleCount > 0).ToList();
                long total = reporting.Sum(r => r.ExampleCount);
                return total == 0 ? double.NaN : reporting.Sum(r => r.Metrics[key] * r.ExampleCount) / total;
            }, StringComparer.Ordinal);
    }
}
