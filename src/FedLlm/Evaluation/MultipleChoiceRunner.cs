using FedLlm.Evaluation.Metrics;

namespace FedLlm.Evaluation;

/// <summary>One multiple-choice item: the prompt, the continuation each choice adds, and the index of the right one.</summary>
public sealed record MultipleChoiceItem(string Id, string Context, IReadOnlyList<string> Continuations, int Gold, string? Group = null);

/// <summary>
/// Scores multiple-choice items by log-likelihood (lm-evaluation-harness's <c>multiple_choice</c> output type):
/// acc picks the choice with the highest Σ log p, acc_norm divides by the choice's byte length first. With groups
/// (MMLU subjects, BBH tasks) it reports each group and both averages: micro over items and macro over groups.
/// </summary>
public static class MultipleChoiceRunner
{
    /// <summary>Scores <paramref name="items"/> under <paramref name="task"/>'s name: accuracy and acc_norm, per group
    /// and micro/macro over groups when the items have groups.</summary>
    public static EvaluationReport Run(string task, IReadOnlyList<MultipleChoiceItem> items, IEvaluationModel model, EvaluationRunOptions options,
        IProgress<EvaluationProgress>? progress, CancellationToken cancellationToken)
    {
        if (options.Limit > 0) items = items.Take(options.Limit).ToList();
        if (items.Count == 0) throw new ArgumentException($"task '{task}': no items to evaluate");
        var samples = new List<EvaluationSample>(items.Count);
        var normalizedCorrect = new List<bool>(items.Count);
        progress?.Report(new EvaluationProgress(0, items.Count));
        foreach (var chunk in items.Chunk(Math.Max(1, options.BatchSize)))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var requests = chunk.SelectMany(item => item.Continuations.Select(c => new LogLikelihoodRequest(item.Context, c))).ToList();
            var scores = model.LogLikelihoods(requests, cancellationToken);
            int offset = 0;
            foreach (var item in chunk)
            {
                var lls = scores.Skip(offset).Take(item.Continuations.Count).Select(s => s.LogProbability).ToList();
                offset += item.Continuations.Count;
                var pick = MultipleChoiceScoring.Pick(lls, item.Continuations);
                samples.Add(new EvaluationSample(item.Id, item.Context, item.Continuations[pick.Chosen], item.Continuations[item.Gold],
                    pick.Chosen == item.Gold ? 1 : 0, item.Group));
                normalizedCorrect.Add(pick.ChosenNormalized == item.Gold);
            }
            progress?.Report(new EvaluationProgress(samples.Count, items.Count));
        }

        var metrics = new Dictionary<string, double>
        {
            ["accuracy"] = samples.Average(s => s.Score),
            ["acc_norm"] = normalizedCorrect.Average(c => c ? 1.0 : 0.0),
        };
        var groups = new Dictionary<string, IReadOnlyDictionary<string, double>>();
        if (items.Any(i => i.Group is not null))
        {
            foreach (var group in Enumerable.Range(0, samples.Count).GroupBy(i => samples[i].Group ?? "").OrderBy(g => g.Key, StringComparer.Ordinal))
                groups[group.Key] = new Dictionary<string, double>
                {
                    ["accuracy"] = group.Average(i => samples[i].Score),
                    ["acc_norm"] = group.Average(i => normalizedCorrect[i] ? 1.0 : 0.0),
                    ["items"] = group.Count(),
                };
            metrics["accuracy_macro"] = groups.Values.Average(g => g["accuracy"]);
            metrics["acc_norm_macro"] = groups.Values.Average(g => g["acc_norm"]);
        }
        return new EvaluationReport(task, samples.Count, metrics, groups, samples);
    }
}
