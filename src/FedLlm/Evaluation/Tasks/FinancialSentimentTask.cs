using FedLlm.Data;
using FedLlm.Evaluation.Metrics;

namespace FedLlm.Evaluation.Tasks;

/// <summary>
/// Financial sentiment as FinGPT's benchmark scores it (Wang et al. 2023, "FinGPT: Instruction Tuning Benchmark for
/// Open-Source Large Language Models in Financial Datasets"): greedy generation after the prompt
/// "Instruction: {instruction}\nInput: {text}\nAnswer: ", the output normalised by FinGPT's change_target, then
/// accuracy, macro-F1 and weighted-F1 (sklearn). Groups: each true label's F1 and support.
/// </summary>
/// <remarks>
/// Names: fpb, fiqa, tfns, nwgi (see <see cref="SentimentSources"/>), and "sentiment" for instruction data in FinGPT's
/// layout (instruction, input, output). Parameters: split (fingpt|all: FinGPT's seeded test split of FPB/FiQA, or
/// every row), prompt (fingpt, or a prompt template name such as alpaca to match how an adapter was trained).
/// FinGPT generates until EOS within 512 tokens (TFNS: 10 new tokens); here <c>--max-new-tokens</c> bounds it
/// (default 10) since the label is the first word a tuned model writes.
/// </remarks>
public sealed class FinancialSentimentTask(string name, IReadOnlyList<SentimentItem> items, PromptTemplate? template) : IEvaluationTask
{
    /// <summary>New tokens generated per answer when none is given: the label is the first word a tuned model
    /// writes.</summary>
    public const int DefaultMaxNewTokens = 10;

    /// <inheritdoc/>
    public string Name => name;

    /// <summary>Builds the task from the CLI's spec: the data file and the split and prompt parameters.</summary>
    public static FinancialSentimentTask FromSpec(EvaluationTaskSpec spec)
    {
        var parameters = new TaskParameterReader(spec, "split", "prompt");
        bool fingptSplit = (parameters.String("split") ?? "fingpt") switch
        {
            "fingpt" => true,
            "all" => false,
            var s => throw new ArgumentException($"{spec.Name}: split={s} is not fingpt or all"),
        };
        var template = (parameters.String("prompt") ?? "fingpt") is "fingpt" ? null : PromptTemplate.FromName(parameters.String("prompt")!);
        var items = spec.Name switch
        {
            "fpb" => SentimentSources.Fpb(spec.DataPath, fingptSplit),
            "fiqa" => SentimentSources.Fiqa(spec.DataPath, fingptSplit),
            "tfns" => SentimentSources.Tfns(spec.DataPath),
            "nwgi" => SentimentSources.Nwgi(spec.DataPath),
            "sentiment" => SentimentSources.Instructions(spec.DataPath),
            _ => throw new ArgumentException($"'{spec.Name}' is not a sentiment task (fpb, fiqa, tfns, nwgi, sentiment)"),
        };
        return new FinancialSentimentTask(spec.Name, items, template);
    }

    /// <summary>FinGPT's format_example, or the template's prompt of "instruction input" (as Alpaca rows are trained).</summary>
    public string Prompt(SentimentItem item)
    {
        if (template is not null) return template.FormatPrompt(item.Input.Length == 0 ? item.Instruction : item.Instruction + " " + item.Input);
        return $"Instruction: {item.Instruction}\n" + (item.Input.Length > 0 ? $"Input: {item.Input}\n" : "") + "Answer: ";
    }

    /// <inheritdoc/>
    public EvaluationReport Evaluate(IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var kept = GenerationRunner.Limit(Name, items, options);
        var prompts = kept.Select(Prompt).ToList();
        var outputs = GenerationRunner.Run(prompts, model, options, [], progress, cancellationToken);
        var truth = kept.Select(i => i.Label).ToList();
        var predicted = outputs.Select(FinGptSentiment.Normalize).ToList();
        var samples = kept.Select((item, i) => new EvaluationSample($"{i}", prompts[i], outputs[i], item.Label, predicted[i] == truth[i] ? 1 : 0, item.Label)).ToList();
        var metrics = new Dictionary<string, double>
        {
            ["accuracy"] = ClassificationMetrics.Accuracy(truth, predicted),
            ["macro_f1"] = ClassificationMetrics.MacroF1(truth, predicted),
            ["weighted_f1"] = ClassificationMetrics.WeightedF1(truth, predicted),
        };
        var groups = ClassificationMetrics.PerClass(truth, predicted).ToDictionary(c => c.Label,
            c => (IReadOnlyDictionary<string, double>)new Dictionary<string, double> { ["f1"] = c.F1, ["items"] = c.Support });
        return new EvaluationReport(Name, kept.Count, metrics, groups, samples);
    }
}
