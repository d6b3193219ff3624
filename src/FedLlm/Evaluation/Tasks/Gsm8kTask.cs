using FedLlm.Evaluation.Data;
using FedLlm.Evaluation.Metrics;

namespace FedLlm.Evaluation.Tasks;

/// <summary>One GSM8K problem; <see cref="Answer"/> is the worked solution ending in "#### 72".</summary>
public sealed record Gsm8kProblem(string Question, string Answer);

/// <summary>
/// GSM8K (Cobbe et al. 2021) by greedy generation, as lm-evaluation-harness's <c>gsm8k</c>: prompt
/// "Question: {question}\nAnswer:" after k solved train problems ("Question: …\nAnswer: {worked answer}\n\n"), stop
/// at "Question:" or a blank line, then exact match of the extracted number against the number after "####".
/// Two extractions, both reported: "strict" (the model's own "#### n") and "flexible" (the last number it wrote).
/// </summary>
/// <remarks>Data: the published JSONL (question, answer). Parameters: train (few-shot file, first k problems).</remarks>
public sealed class Gsm8kTask(IReadOnlyList<Gsm8kProblem> problems, IReadOnlyList<Gsm8kProblem> train) : IEvaluationTask
{
    /// <summary>Where an answer is cut: the next "Question:" or a blank line.</summary>
    public static readonly string[] StopStrings = ["Question:", "\n\n"];

    /// <inheritdoc/>
    public string Name => "gsm8k";

    /// <summary>Builds the task from the CLI's spec (test file; parameter train for few-shot examples).</summary>
    public static Gsm8kTask FromSpec(EvaluationTaskSpec spec)
    {
        var parameters = new TaskParameterReader(spec, "train");
        return new Gsm8kTask(Read(spec.DataPath), parameters.String("train") is { } t ? Read(t) : []);
    }

    /// <summary>Reads GSM8K records {question, answer}; each answer must end in a "#### number" line.</summary>
    public static IReadOnlyList<Gsm8kProblem> Read(string path) => EvaluationRecords.ReadAll(path).Select(r =>
    {
        string answer = EvaluationRecords.String(r, "answer");
        if (!answer.Contains("####", StringComparison.Ordinal)) throw r.Location.Error("answer", "has no '#### <number>' final line");
        return new Gsm8kProblem(EvaluationRecords.String(r, "question"), answer);
    }).ToList();

    /// <summary>The prompt of <paramref name="problem"/> after <paramref name="fewShot"/> solved training
    /// problems.</summary>
    public string Prompt(Gsm8kProblem problem, int fewShot)
    {
        if (fewShot > train.Count) throw new ArgumentException($"gsm8k: {fewShot}-shot needs --param train=FILE with at least {fewShot} problems (have {train.Count})");
        return string.Concat(train.Take(fewShot).Select(s => $"Question: {s.Question}\nAnswer: {s.Answer}\n\n")) + $"Question: {problem.Question}\nAnswer:";
    }

    /// <inheritdoc/>
    public EvaluationReport Evaluate(IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var items = GenerationRunner.Limit(Name, problems, options);
        var prompts = items.Select(p => Prompt(p, options.FewShot)).ToList();
        var outputs = GenerationRunner.Run(prompts, model, options, StopStrings, progress, cancellationToken);
        var samples = new List<EvaluationSample>();
        int strict = 0, flexible = 0;
        for (int i = 0; i < items.Count; i++)
        {
            string reference = AnswerExtraction.Gsm8kReference(items[i].Answer);
            bool strictHit = AnswerExtraction.Gsm8kStrict(outputs[i]) == reference;
            bool flexibleHit = AnswerExtraction.Gsm8kFlexible(outputs[i]) == reference;
            strict += strictHit ? 1 : 0;
            flexible += flexibleHit ? 1 : 0;
            samples.Add(new EvaluationSample($"{i}", prompts[i], outputs[i], reference, flexibleHit ? 1 : 0));
        }
        var metrics = new Dictionary<string, double>
        {
            ["exact_match_strict"] = (double)strict / items.Count,
            ["exact_match_flexible"] = (double)flexible / items.Count,
        };
        return new EvaluationReport(Name, items.Count, metrics, new Dictionary<string, IReadOnlyDictionary<string, double>>(), samples);
    }
}
