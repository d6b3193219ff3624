using System.Text.Json;

namespace FedLlm.Federation.Simulation;

/// <summary>Writes the comparison of a simulation: results.json (final scores and per-round curves) and rounds.png.</summary>
public static class ResultsReport
{
    public static void Write(string directory, IReadOnlyList<SimulationOutcome> outcomes)
    {
        Directory.CreateDirectory(directory);
        var json = outcomes.Select(o => new
        {
            run = o.Name,
            held_out_loss = o.Final?.Loss,
            held_out_exact_match = o.Final?.Score,
            seconds = o.Seconds,
            rounds = o.Rounds.Select(r => new { round = r.Round, client_loss = r.ClientLoss.Values.Average(), eval_loss = r.EvalLoss, eval_score = r.EvalScore }),
        });
        Io.AtomicFile.WriteAllText(Path.Combine(directory, "results.json"), JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        RoundChart.WritePng(Path.Combine(directory, "rounds.png"), outcomes);
    }
}
