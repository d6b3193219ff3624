namespace FedLlm.Evaluation.Judge;

/// <summary>Mean ratings of one judged run: per turn, overall and per category (null where nothing was scored).</summary>
/// <param name="Turn1">MT-1: the mean turn-1 rating (Vicuna-Bench's score).</param>
/// <param name="Turn2">MT-2: the mean turn-2 rating.</param>
/// <param name="Average">MT-Avg: the mean of every scored judgment of both turns pooled, as FastChat's show_result
/// computes it (not the mean of MT-1 and MT-2, which differs when the turns have different numbers of scored judgments).</param>
/// <param name="Unscored">Judgments without a rating (score −1), left out of every mean.</param>
/// <param name="Judgments">Judgments counted, scored or not.</param>
/// <param name="Categories">The same scores per question category; empty when no categories were given.</param>
public sealed record JudgedScores(
    double? Turn1, double? Turn2, double? Average, int Judgments, int Unscored, IReadOnlyDictionary<string, JudgedScores> Categories)
{
    /// <param name="categoryOf">Question id → category, for the per-category means.</param>
    /// <param name="judgments">Every judgment of the run.</param>
    public static JudgedScores Compute(IReadOnlyList<Judgment> judgments, IReadOnlyDictionary<string, string>? categoryOf = null)
    {
        ArgumentNullException.ThrowIfNull(judgments);
        var categories = categoryOf is null
            ? new Dictionary<string, JudgedScores>()
            : judgments.GroupBy(j => categoryOf.GetValueOrDefault(j.QuestionId, "unknown"))
                .OrderBy(g => g.Key, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => Compute(g.ToList()));
        var scored = judgments.Where(j => j.HasScore).ToList();
        return new JudgedScores(
            Mean(scored.Where(j => j.Turn == 1)), Mean(scored.Where(j => j.Turn == 2)), Mean(scored),
            judgments.Count, judgments.Count - scored.Count, categories);
    }

    private static double? Mean(IEnumerable<Judgment> judgments)
    {
        var scores = judgments.Select(j => j.Score).ToList();
        return scores.Count == 0 ? null : scores.Average();
    }
}
