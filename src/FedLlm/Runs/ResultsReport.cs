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
            rounds = o.Rounds.Select(r => new { round = r.Round, client_loss = r.ClientLoss.Values.Average(), eval_loss = r.EvalLoss, eval_score = r.EvalScore, eval_metrics = r.EvalMetrics }),
        });
        Io.AtomicFile.WriteAllText(Path.Combine(directory, "results.json"), JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        RoundChart.WritePng(Path.Combine(directory, "rounds.png"), outcomes);
    }
}
