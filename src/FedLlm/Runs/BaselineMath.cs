using FedLlm.Federation;

namespace FedLlm.Runs;

/// <summary>How the per-client results of a baseline that trains every client alone become one row.</summary>
public static class BaselineMath
{
    /// <summary>
    /// The mean of loss, score and every metric all clients report, each client weighted by its example count (the
    /// weighting of FedAvg's objective Σ (n_i/n)·F_i), or null when no client was evaluated.
    /// </summary>
    public static EvaluationResult? WeightedMean(IReadOnlyList<ClientOutcome> clients)
    {
        ArgumentNullException.ThrowIfNull(clients);
        var scored = clients.Where(c => c.Outcome.Final is not null).Select(c => (Weight: (double)c.Examples, Result: c.Outcome.Final!)).ToList();
        if (scored.Count == 0) return null;
        double total = scored.Sum(s => s.Weight);
        if (!(total > 0)) throw new ArgumentException("the clients' example counts sum to zero", nameof(clients));
        double Mean(Func<EvaluationResult, double> value) => scored.Sum(s => s.Weight * value(s.Result)) / total;
        var keys = scored.Select(s => s.Result.Metrics?.Keys ?? Enumerable.Empty<string>()).Aggregate((a, b) => a.Intersect(b)).ToList();
        var metrics = keys.Count == 0 ? null : keys.ToDictionary(k => k, k => Mean(r => r.Metrics![k]));
        return new EvaluationResult(Mean(r => r.Loss), Mean(r => r.Score), metrics);
    }

    /// <summary>The lowest and highest client score and loss, or null when no client was evaluated.</summary>
    public static (double MinScore, double MaxScore, double MinLoss, double MaxLoss)? Spread(IReadOnlyList<ClientOutcome> clients)
    {
        var finals = clients.Select(c => c.Outcome.Final).OfType<EvaluationResult>().ToList();
        if (finals.Count == 0) return null;
        return (finals.Min(f => f.Score), finals.Max(f => f.Score), finals.Min(f => f.Loss), finals.Max(f => f.Loss));
    }
}
