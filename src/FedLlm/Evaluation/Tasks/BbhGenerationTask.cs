using FedLlm.Evaluation.Metrics;

namespace FedLlm.Evaluation.Tasks;

/// <summary>
/// BIG-Bench Hard by generation (every subset, free-form and multiple-choice alike): prompt "Q: {input}\nA:" after
/// k solved examples of the same task, with <c>--param cot=true</c> followed by " Let's think step by step."; the answer
/// is the text after "the answer is" (lm-eval's BBH chain-of-thought filter), else the first line; exact match against
/// the target, case-insensitive. Per-task groups; headline "exact_match" (micro) and "exact_match_macro".
/// </summary>
public sealed class BbhGenerationTask(IReadOnlyList<BbhExample> examples, bool chainOfThought) : IEvaluationTask
{
    /// <summary>Where an answer is cut: the next "Q:" or a blank line.</summary>
    public static readonly string[] StopStrings = ["Q:", "\n\n"];

    /// <inheritdoc/>
    public string Name => "bbh";

    /// <summary>Builds the task from the CLI's spec (data file or folder; parameter cot for chain-of-thought
    /// prompts).</summary>
    public static BbhGenerationTask FromSpec(EvaluationTaskSpec spec)
    {
        var parameters = new TaskParameterReader(spec, "cot");
        return new BbhGenerationTask(BbhExamples.Read(spec.DataPath), (parameters.Bool("cot") ?? false));
    }

    /// <inheritdoc/>
    public EvaluationReport Evaluate(IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var (shots, evaluated) = BbhExamples.SplitShots(examples, options.FewShot);
        var items = GenerationRunner.Limit(Name, evaluated, options);
        string prefix = chainOfThought ? " Let's think step by step." : "";
        var prompts = items.Select(e => BbhExamples.Prompt(e, shots[e.Task], prefix)).ToList();
        var outputs = GenerationRunner.Run(prompts, model, options, StopStrings, progress, cancellationToken);
        var samples = items.Select((e, i) =>
        {
            string answer = AnswerExtraction.Bbh(outputs[i]);
            bool hit = string.Equals(answer, e.Target.Trim(), StringComparison.OrdinalIgnoreCase);
            return new EvaluationSample($"{e.Task}/{e.Index}", prompts[i], outputs[i], e.Target, hit ? 1 : 0, e.Task);
        }).ToList();
        var groups = samples.GroupBy(s => s.Group!).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key,
            g => (IReadOnlyDictionary<string, double>)new Dictionary<string, double> { ["exact_match"] = g.Average(s => s.Score), ["items"] = g.Count() });
        var metrics = new Dictionary<string, double>
        {
            ["exact_match"] = samples.Average(s => s.Score),
            ["exact_match_macro"] = groups.Values.Average(g => g["exact_match"]),
        };
        return new EvaluationReport(Name, samples.Count, metrics, groups, samples);
    }
}
