using FedLlm.Evaluation.Data;
using FedLlm.Evaluation.Metrics;

namespace FedLlm.Evaluation.Tasks;

/// <summary>
/// Text overlap with references: corpus BLEU (sacrebleu's default, 0–100) and ROUGE-L F-measure (rouge_score, mean over
/// items, 0–1). Records hold a "reference" and either a "prediction" (scored as given, no model call) or a "prompt"
/// (answered by greedy generation, stopped at a blank line). <c>--param smooth=none</c> turns off BLEU's exp smoothing.
/// </summary>
public sealed class OverlapTask(string name, IReadOnlyList<(string? Prompt, string? Prediction, string Reference)> items, BleuSmoothing smoothing) : IEvaluationTask
{
    /// <inheritdoc/>
    public string Name => name;

    /// <summary>Builds the task from the CLI's spec (data file; parameter smooth: exp or none).</summary>
    public static OverlapTask FromSpec(EvaluationTaskSpec spec)
    {
        var parameters = new TaskParameterReader(spec, "smooth");
        var smoothing = (parameters.String("smooth") ?? "exp") switch
        {
            "exp" => BleuSmoothing.Exp,
            "none" => BleuSmoothing.None,
            var s => throw new ArgumentException($"{spec.Name}: smooth={s} is not exp or none"),
        };
        var items = EvaluationRecords.ReadAll(spec.DataPath).Select(r =>
        {
            string? prediction = EvaluationRecords.OptionalString(r, "prediction");
            string? prompt = EvaluationRecords.OptionalString(r, "prompt");
            if (prediction is null && prompt is null) throw r.Location.Error(null, "needs a 'prediction' or a 'prompt' field");
            return (prompt, prediction, EvaluationRecords.String(r, "reference"));
        }).ToList();
        return new OverlapTask(spec.Name, items, smoothing);
    }

    /// <inheritdoc/>
    public EvaluationReport Evaluate(IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var kept = GenerationRunner.Limit(Name, items, options);
        var toGenerate = kept.Select((item, i) => (item, i)).Where(x => x.item.Prediction is null).ToList();
        var generated = toGenerate.Count == 0 ? []
            : GenerationRunner.Run(toGenerate.Select(x => x.item.Prompt!).ToList(), model, options, ["\n\n"], progress, cancellationToken);
        var predictions = kept.Select(item => item.Prediction).ToArray();
        for (int k = 0; k < toGenerate.Count; k++) predictions[toGenerate[k].i] = generated[k];

        var references = kept.Select(i => (IReadOnlyList<string>)[i.Reference]).ToList();
        var bleu = CorpusBleu.Compute(predictions!, references, smoothing);
        var rouge = kept.Select((item, i) => RougeL.Score(item.Reference, predictions[i]!).FMeasure).ToList();
        var samples = kept.Select((item, i) => new EvaluationSample($"{i}", item.Prompt ?? "", predictions[i], item.Reference, rouge[i])).ToList();
        progress?.Report(new EvaluationProgress(kept.Count, kept.Count));
        var metrics = new Dictionary<string, double> { ["bleu"] = bleu.Score, ["rougeL"] = rouge.Average() };
        return new EvaluationReport(Name, kept.Count, metrics, new Dictionary<string, IReadOnlyDictionary<string, double>>(), samples);
    }
}
