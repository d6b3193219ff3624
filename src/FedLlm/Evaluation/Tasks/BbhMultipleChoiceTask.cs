using System.Text.RegularExpressions;

namespace FedLlm.Evaluation.Tasks;

/// <summary>
/// BIG-Bench Hard's multiple-choice subsets (Suzgun et al. 2022) scored by log-likelihood: the options "(A) …" listed in
/// the input become continuations " (A)", " (B)"…, and the target "(A)" is the right one. Examples whose target is
/// not an option letter (free-form subsets) are skipped; <c>bbh</c> generates those. Per-task groups.
/// </summary>
public sealed partial class BbhMultipleChoiceTask(IReadOnlyList<BbhExample> examples) : IEvaluationTask
{
    /// <inheritdoc/>
    public string Name => "bbh-mc";

    /// <summary>Builds the task from the CLI's spec (data file or folder).</summary>
    public static BbhMultipleChoiceTask FromSpec(EvaluationTaskSpec spec)
    {
        _ = new TaskParameterReader(spec); // takes no parameters: refuse any
        var all = BbhExamples.Read(spec.DataPath);
        var choice = all.Where(e => OptionTarget().IsMatch(e.Target.Trim())).ToList();
        if (choice.Count == 0) throw new ArgumentException($"bbh-mc: {spec.DataPath} has no example with an option target such as \"(A)\"");
        return new BbhMultipleChoiceTask(choice);
    }

    /// <summary>The option letters listed in an input, in order ("(A) …" at the start of a line).</summary>
    public static IReadOnlyList<string> Options(string input) =>
        OptionLine().Matches(input).Select(m => m.Groups[1].Value).Distinct().ToList();

    /// <inheritdoc/>
    public EvaluationReport Evaluate(IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var (shots, evaluated) = BbhExamples.SplitShots(examples, options.FewShot);
        var items = GenerationRunner.Limit(Name, evaluated, options).Select(e =>
        {
            var letters = Options(e.Input);
            int gold = letters.ToList().IndexOf(e.Target.Trim()[1..^1]);
            if (gold < 0) throw new ArgumentException($"bbh-mc: {e.Task} example {e.Index}: target {e.Target} is not among the options ({string.Join(", ", letters)}) in its input");
            return new MultipleChoiceItem($"{e.Task}/{e.Index}", BbhExamples.Prompt(e, shots[e.Task]), letters.Select(l => $" ({l})").ToList(), gold, e.Task);
        }).ToList();
        return MultipleChoiceRunner.Run(Name, items, model, options, progress, cancellationToken);
    }

    [GeneratedRegex(@"^\([A-Z]\)$")] private static partial Regex OptionTarget();
    [GeneratedRegex(@"^\(([A-Z])\)", RegexOptions.Multiline)] private static partial Regex OptionLine();
}
