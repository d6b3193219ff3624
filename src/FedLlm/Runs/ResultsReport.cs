using System.Text.Json;

namespace FedLlm.Runs;

/// <summary>Writes the comparison of a simulation: results.json (final scores and per-round curves) and rounds.png.</summary>
public static class ResultsReport
{
    public static void Write(string directory, IReadOnlyList<RunOutcome> outcomes)
    {
        Directory.CreateDirectory(directory);
        var json = outcomes.Select(o => new
        {
            run = o.Name,
            held_out_loss = o.Final?.Loss,
            // The task's score: exact match for instruction tuning, reward accuracy for DPO.
            held_out_score = o.Final?.Score,
            held_out_metrics = o.Final?.Metrics,
            seconds = o.Seconds,
            // DP runs: (ε, δ) after the last round that ran; the held-out metrics carry a backdoor's attack_success_rate.
            privacy = o.Rounds.LastOrDefault()?.Privacy is { } spent ? new { epsilon = spent.Epsilon, delta = spent.Delta, noise_multiplier = spent.NoiseMultiplier, sampling_rate = spent.SamplingRate, rounds = o.Rounds.Count } : null,
            // Secure aggregation: the settings and, per round, how many clients each released sum holds.
            secure_aggregation = o.Rounds.LastOrDefault()?.SecureAggregation is { } sa ? new { threshold = sa.Threshold, neighbours = sa.Neighbours, quantisation_bits = sa.QuantisationBits, quantisation_range = sa.QuantisationRange, survivors = o.Rounds.Select(r => r.SecureAggregation?.Survivors), dropped = o.Rounds.Select(r => r.SecureAggregation?.Dropped), protocol_bytes = o.Rounds.Select(r => r.SecureAggregation?.ProtocolBytes) } : null,
            rounds = o.Rounds.Select(r => new { round = r.Round, client_loss = r.ClientLoss.Values.Average(), eval_loss = r.EvalLoss, eval_score = r.EvalScore, eval_metrics = r.EvalMetrics, epsilon = r.Privacy?.Epsilon }),
        });
        Io.AtomicFile.WriteAllText(Path.Combine(directory, "results.json"), JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        RoundChart.WritePng(Path.Combine(directory, "rounds.png"), outcomes);
    }
}
