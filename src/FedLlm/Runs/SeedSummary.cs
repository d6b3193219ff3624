namespace FedLlm.Runs;

/// <summary>The outcomes of every algorithm and baseline with one seed.</summary>
public sealed record SeedOutcomes(long Seed, IReadOnlyList<RunOutcome> Outcomes);

/// <summary>How reports name a run's held-out scores: "loss"/"exact match" (SFT), "DPO loss"/"reward accuracy" (DPO),
/// and the score of a constant answer (the most common held-out answer's share), if known.</summary>
public sealed record ReportLabels(string LossName = "loss", string ScoreName = "score", double? ScoreFloor = null);

/// <summary>Mean and sample standard deviation (n − 1; 0 for one value) of a score over seeds.</summary>
public sealed record SeedStatistic(double Mean, double StandardDeviation, int Count)
{
    /// <summary>The statistic of <paramref name="values"/>.</summary>
    public static SeedStatistic Of(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count == 0) throw new ArgumentException("no values", nameof(values));
        double mean = values.Average();
        double sd = values.Count > 1 ? Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1)) : 0;
        return new SeedStatistic(mean, sd, values.Count);
    }
}

/// <summary>One algorithm's or baseline's held-out results over seeds (null where no seed evaluated it).</summary>
public sealed record SeedRow(string Name, bool IsBaseline, SeedStatistic? Loss, SeedStatistic? Score, SeedStatistic? MacroF1, double Seconds);

/// <summary>A − B of the held-out score and loss, seed by seed (the same data split and start for both), and over seeds.</summary>
public sealed record PairedDifference(string A, string B, IReadOnlyList<double> ScoreBySeed, SeedStatistic Score, SeedStatistic Loss)
{
    /// <summary>Seeds on which A's score is above B's.</summary>
    public int Wins => ScoreBySeed.Count(d => d > 0);
}

/// <summary>Summaries of a run over several seeds: mean ± standard deviation per row, and paired differences.</summary>
public static class SeedSummary
{
    /// <summary>One row per algorithm and baseline, in the first seed's order.</summary>
    public static IReadOnlyList<SeedRow> Rows(IReadOnlyList<SeedOutcomes> seeds)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        var names = seeds.SelectMany(s => s.Outcomes).Select(o => o.Name).Distinct().ToList();
        return names.Select(name =>
        {
            var outcomes = seeds.Select(s => s.Outcomes.FirstOrDefault(o => o.Name == name)).OfType<RunOutcome>().ToList();
            var finals = outcomes.Select(o => o.Final).OfType<Federation.EvaluationResult>().ToList();
            SeedStatistic? Of(Func<Federation.EvaluationResult, double?> value)
            {
                var values = finals.Select(value).OfType<double>().ToList();
                return values.Count == 0 ? null : SeedStatistic.Of(values);
            }
            return new SeedRow(name, outcomes.Any(o => o.IsBaseline), Of(f => f.Loss), Of(f => f.Score),
                Of(f => f.Metrics?.TryGetValue(SimulationRunner.MacroF1Metric, out double v) == true ? v : null), outcomes.Average(o => o.Seconds));
        }).ToList();
    }

    /// <summary><paramref name="a"/> − <paramref name="b"/> on every seed that evaluated both, or null when none did.</summary>
    public static PairedDifference? Paired(IReadOnlyList<SeedOutcomes> seeds, string a, string b)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        var pairs = seeds
            .Select(s => (A: s.Outcomes.FirstOrDefault(o => o.Name == a)?.Final, B: s.Outcomes.FirstOrDefault(o => o.Name == b)?.Final))
            .Where(p => p.A is not null && p.B is not null)
            .ToList();
        if (pairs.Count == 0) return null;
        var score = pairs.Select(p => p.A!.Score - p.B!.Score).ToList();
        return new PairedDifference(a, b, score, SeedStatistic.Of(score), SeedStatistic.Of(pairs.Select(p => p.A!.Loss - p.B!.Loss).ToList()));
    }
}
