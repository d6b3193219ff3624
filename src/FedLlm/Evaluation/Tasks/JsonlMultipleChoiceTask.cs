using FedLlm.Data.Datasets;
using FedLlm.Evaluation.Data;

namespace FedLlm.Evaluation.Tasks;

/// <summary>
/// Any multiple-choice set as JSON Lines / JSON / Parquet records {question, choices: [..], answer} where answer is
/// the right choice's 0-based index or its text; an optional "subject" or "category" column groups the results.
/// Prompt "Question: {question}\nAnswer:", continuations " {choice}" (lm-eval's ARC/PIQA style); accuracy and
/// acc_norm. Few-shot examples: the first k records of <c>--param train=FILE</c>.
/// </summary>
public sealed class JsonlMultipleChoiceTask(IReadOnlyList<MultipleChoiceItem> items, IReadOnlyList<MultipleChoiceItem> shots) : IEvaluationTask
{
    /// <inheritdoc/>
    public string Name => "mc";

    /// <summary>Builds the task from the CLI's spec (data file; parameter train for few-shot examples).</summary>
    public static JsonlMultipleChoiceTask FromSpec(EvaluationTaskSpec spec)
    {
        var parameters = new TaskParameterReader(spec, "train");
        return new JsonlMultipleChoiceTask(Read(spec.DataPath), parameters.String("train") is { } train ? Read(train) : []);
    }

    /// <summary>Reads {question, choices, answer} records; answer is a choice's index or its text.</summary>
    public static IReadOnlyList<MultipleChoiceItem> Read(string path) => EvaluationRecords.ReadAll(path).Select((r, i) =>
    {
        string question = EvaluationRecords.String(r, "question");
        var choices = EvaluationRecords.Strings(r, "choices");
        if (choices.Count < 2) throw r.Location.Error("choices", $"needs at least 2 choices, got {choices.Count}");
        int gold = AnswerIndex(r, choices);
        string? group = EvaluationRecords.OptionalString(r, "subject") ?? EvaluationRecords.OptionalString(r, "category");
        return new MultipleChoiceItem($"{i}", $"Question: {question}\nAnswer:", choices.Select(c => " " + c).ToList(), gold, group);
    }).ToList();

    /// <summary>A string answer is the right choice's text (an index only if no choice reads so); a number is its index.</summary>
    static int AnswerIndex(DataRecord r, IReadOnlyList<string> choices)
    {
        if (EvaluationRecords.OptionalString(r, "answer") is { } text)
        {
            int found = choices.ToList().IndexOf(text);
            if (found >= 0) return found;
            if (!int.TryParse(text, out _)) throw r.Location.Error("answer", $"'{text}' is not one of the choices");
        }
        int index = EvaluationRecords.Int(r, "answer");
        return index >= 0 && index < choices.Count ? index : throw r.Location.Error("answer", $"index {index} is outside the {choices.Count} choices");
    }

    /// <inheritdoc/>
    public EvaluationReport Evaluate(IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        if (options.FewShot > shots.Count) throw new ArgumentException($"mc: {options.FewShot}-shot needs --param train=FILE with at least {options.FewShot} records (have {shots.Count})");
        string prefix = string.Concat(shots.Take(options.FewShot).Select(s => s.Context + s.Continuations[s.Gold] + "\n\n"));
        var prompted = items.Select(i => i with { Context = prefix + i.Context }).ToList();
        return MultipleChoiceRunner.Run(Name, prompted, model, options, progress, cancellationToken);
    }
}
