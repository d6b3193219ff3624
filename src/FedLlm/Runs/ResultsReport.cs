using System.Text.Json;
using FedLlm.Federation;

namespace FedLlm.Runs;

/// <summary>Writes the comparison of a simulation: results.json (schema in docs/metrics.md) and rounds.png.</summary>
public static class ResultsReport
{
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>One seed's outcomes.</summary>
    public static void Write(string directory, IReadOnlyList<RunOutcome> outcomes, ReportLabels? labels = null, long? seed = null) =>
        Write(directory, [new SeedOutcomes(seed ?? 0, outcomes)], labels);

    /// <summary>Every seed's outcomes, the mean ± standard deviation over seeds, and FedAvg − local-only per seed.</summary>
    public static void Write(string directory, IReadOnlyList<SeedOutcomes> seeds, ReportLabels? labels = null)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        labels ??= new ReportLabels();
        Directory.CreateDirectory(directory);
        var paired = SeedSummary.Paired(seeds, "fedavg", "local-only");
        var json = new
        {
            loss_name = labels.LossName,
            score_name = labels.ScoreName,
            score_floor = labels.ScoreFloor,
            seeds = seeds.Select(s => s.Seed),
            summary = SeedSummary.Rows(seeds).Select(r => new
            {
                run = r.Name, baseline = r.IsBaseline, held_out_loss = Statistic(r.Loss), held_out_score = Statistic(r.Score),
                held_out_macro_f1 = Statistic(r.MacroF1), seconds = r.Seconds,
            }),
            paired = paired is null ? null : new
            {
                a = paired.A, b = paired.B, score_by_seed = paired.ScoreBySeed, score = Statistic(paired.Score), loss = Statistic(paired.Loss), wins = paired.Wins,
            },
            runs = seeds.SelectMany(s => s.Outcomes.Select(o => Run(o, s.Seed))),
        };
        Io.AtomicFile.WriteAllText(Path.Combine(directory, "results.json"), JsonSerializer.Serialize(json, Indented));
        RoundChart.WritePng(Path.Combine(directory, "rounds.png"), seeds, labels);
        var personalized = seeds.SelectMany(s => s.Outcomes).Where(o => o.Personal is not null).ToList();
        if (personalized.Count > 0) ClientChart.WritePng(Path.Combine(directory, "clients.png"), personalized);
    }

    static object? Statistic(SeedStatistic? s) => s is null ? null : new { mean = s.Mean, sd = s.StandardDeviation, n = s.Count };

    static object Run(RunOutcome o, long? seed)
    {
        var spread = o.Clients is null ? null : BaselineMath.Spread(o.Clients);
        return new
        {
            run = o.Name,
            seed,
            baseline = o.IsBaseline,
            held_out_loss = o.Final?.Loss,
            // The task's score: exact match for instruction tuning, reward accuracy for DPO.
            held_out_score = o.Final?.Score,
            held_out_metrics = o.Final?.Metrics,
            min_score = spread?.MinScore,
            max_score = spread?.MaxScore,
            min_loss = spread?.MinLoss,
            max_loss = spread?.MaxLoss,
            seconds = o.Seconds,
            // DP runs: (ε, δ) after the last round that ran; the held-out metrics carry a backdoor's attack_success_rate.
            privacy = o.Rounds.LastOrDefault()?.Privacy is { } spent ? new { epsilon = spent.Epsilon, delta = spent.Delta, noise_multiplier = spent.NoiseMultiplier, sampling_rate = spent.SamplingRate, rounds = o.Rounds.Count } : null,
            // Secure aggregation: the settings and, per round, how many clients each released sum holds.
            secure_aggregation = o.Rounds.LastOrDefault()?.SecureAggregation is { } sa ? new { threshold = sa.Threshold, neighbours = sa.Neighbours, quantisation_bits = sa.QuantisationBits, quantisation_range = sa.QuantisationRange, survivors = o.Rounds.Select(r => r.SecureAggregation?.Survivors), dropped = o.Rounds.Select(r => r.SecureAggregation?.Dropped), protocol_bytes = o.Rounds.Select(r => r.SecureAggregation?.ProtocolBytes) } : null,
            // Robust aggregation: the rule of the last round (each round's per-client shares are in rounds[]).
            robust_rule = o.Rounds.LastOrDefault()?.Robust?.Rule,
            // A simulated attack: its kind, fraction and the clients that attacked; the backdoor's success rate is in
            // held_out_metrics.attack_success_rate.
            attack = o.Attack is { } attack ? new { kind = attack.Kind, fraction = attack.Fraction, attackers = attack.Attackers } : null,
            clients = o.Clients?.Select(c => new
            {
                client = c.Client, examples = c.Examples, held_out_loss = c.Outcome.Final?.Loss, held_out_score = c.Outcome.Final?.Score,
                held_out_metrics = c.Outcome.Final?.Metrics, seconds = c.Outcome.Seconds,
            }),
            rounds = o.Rounds.Select(r => new
            {
                round = r.Number, client_loss = r.ClientLoss.Values.Average(), eval_loss = r.EvalLoss, eval_score = r.EvalScore,
                eval_metrics = r.EvalMetrics, task_metrics = r.TaskMetrics, federated_evaluation = r.FederatedEvaluation, epsilon = r.Privacy?.Epsilon,
                // Simulated client speeds (async:): the virtual time at the round's end, and FedBuff's staleness per update.
                virtual_time = r.VirtualTime, staleness = r.Async?.Updates.Select(u => u.Staleness),
                robust = r.Robust is { } robust ? new { rule = robust.Rule, client_weights = robust.ClientWeights, score_name = robust.ScoreName, client_scores = robust.ClientScores } : null,
            }),
            // Personalisation: each client's scores on its own held-out split, and their held-out-size-weighted means.
            personalization = o.Personal is { } personal ? PersonalJson(personal) : null,
        };
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
