using System.Text.RegularExpressions;
using FedLlm.Evaluation.Data;
using FedLlm.Evaluation.Metrics;

namespace FedLlm.Evaluation.Tasks;

/// <summary>
/// Any question set scored by exact match of an extracted answer: records with a prompt ("prompt", "question" or
/// "input") and a reference ("answer", "reference" or "target"). The model's output is cut at the first blank line;
/// <c>--param extract=REGEX</c> takes its first capture group (the whole match without groups; no match = wrong),
/// default the first non-empty line. <c>--param ignore_case=true</c> compares case-insensitively; <c>--param stop=TEXT</c>
/// replaces the stop string.
/// </summary>
public sealed class RegexGenerationTask(IReadOnlyList<(string Prompt, string Reference)> items, Regex? extract, bool ignoreCase, string stop) : IEvaluationTask
{
    static readonly string[] PromptFields = ["prompt", "question", "input"];
    static readonly string[] ReferenceFields = ["answer", "reference", "target"];

    /// <inheritdoc/>
    public string Name => "generate";

    /// <summary>Builds the task from the CLI's spec (data file; parameters extract, ignore_case, stop).</summary>
    public static RegexGenerationTask FromSpec(EvaluationTaskSpec spec)
    {
        var parameters = new TaskParameterReader(spec, "extract", "ignore_case", "stop");
        Regex? extract = null;
        if (parameters.String("extract") is { } pattern)
        {
            try { extract = new Regex(pattern, RegexOptions.None, TimeSpan.FromSeconds(1)); }
            catch (ArgumentException e) { throw new ArgumentException($"generate: extract={pattern} is not a valid regular expression: {e.Message}", e); }
        }
        var items = EvaluationRecords.ReadAll(spec.DataPath).Select(r =>
        {
            string Pick(string[] names, string role) => names.FirstOrDefault(n => EvaluationRecords.Has(r, n)) is { } n
                ? EvaluationRecords.String(r, n)
                : throw r.Location.Error(null, $"no {role} field (one of {string.Join(", ", names)})");
            return (Pick(PromptFields, "prompt"), Pick(ReferenceFields, "reference"));
        }).ToList();
        return new RegexGenerationTask(items, extract, parameters.Bool("ignore_case") ?? false, System.Text.RegularExpressions.Regex.Unescape(parameters.String("stop") ?? "\\n\\n"));
    }

    /// <summary>The answer in a generation: the extract pattern's match, or the first non-empty line without
    /// one.</summary>
    public string? Extract(string output) => extract is null
        ? output.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0) ?? ""
        : AnswerExtraction.Regex(output, extract);

    /// <inheritdoc/>
    public EvaluationReport Evaluate(IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var kept = GenerationRunner.Limit(Name, items, options);
        var outputs = GenerationRunner.Run(kept.Select(i => i.Prompt).ToList(), model, options, [stop], progress, cancellationToken);
        var comparison = ignoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        var samples = kept.Select((item, i) =>
        {
            bool hit = Extract(outputs[i]) is { } answer && string.Equals(answer, item.Reference.Trim(), comparison);
            return new EvaluationSample($"{i}", item.Prompt, outputs[i], item.Reference, hit ? 1 : 0);
        }).ToList();
        return new EvaluationReport(Name, samples.Count, new Dictionary<string, double> { ["exact_match"] = samples.Average(s => s.Score) },
            new Dictionary<string, IReadOnlyDictionary<string, double>>(), samples);
    }
}
