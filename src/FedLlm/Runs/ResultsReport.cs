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
            rounds = o.Rounds.Select(r => new { round = r.Round, client_loss = r.ClientLoss.Values.Average(), eval_loss = r.EvalLoss, eval_score = r.EvalScore, eval_metrics = r.EvalMetrics, epsilon = r.Privacy?.Epsilon, aggregation_metrics = r.AggregationMetrics }),
            // Personalisation: each client's scores on its own held-out split, and their held-out-size-weighted means.
            personalization = o.Personal is { } personal ? PersonalJson(personal) : null,
        });
        Io.AtomicFile.WriteAllText(Path.Combine(directory, "results.json"), JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        RoundChart.WritePng(Path.Combine(directory, "rounds.png"), outcomes);
        if (outcomes.Any(o => o.Personal is not null)) ClientChart.WritePng(Path.Combine(directory, "clients.png"), outcomes);
    }

    static object PersonalJson(PersonalScores personal)
    {
        static object? Scores(EvaluationResultLike? r) => r is null ? null : new { loss = r.Loss, score = r.Score };
        return new
        {
            mean = new
            {
                global = Scores(Like(personal.Mean(c => c.Global))),
                personal = Scores(Like(personal.Mean(c => c.Personal))),
                finetuned = Scores(Like(personal.Mean(c => c.Finetuned))),
                local_only = Scores(Like(personal.Mean(c => c.LocalOnly))),
            },
            clients = personal.Clients.Select(c => new
            {
                client = c.Client,
                held_out_examples = c.HeldOutExamples,
                global = Scores(Like(c.Global)),
                personal = Scores(Like(c.Personal)),
                finetuned = Scores(Like(c.Finetuned)),
                local_only = Scores(Like(c.LocalOnly)),
            }),
        };
    }

    sealed record EvaluationResultLike(double Loss, double Score);

    static EvaluationResultLike? Like(Federation.EvaluationResult? r) => r is null ? null : new(r.Loss, r.Score);
}
