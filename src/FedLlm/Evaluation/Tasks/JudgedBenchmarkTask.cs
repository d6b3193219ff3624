using FedLlm.Data.Templates;
using FedLlm.Evaluation.Judge;
using FedLlm.Tokenization;

namespace FedLlm.Evaluation.Tasks;

/// <summary>
/// MT-Bench and Vicuna-Bench as FastChat's llm_judge runs them: generate answers to question.jsonl (both turns of MT-Bench
/// questions), write them in FastChat's answer layout, grade each answer turn 1–10 with an LLM judge
/// (<see cref="SingleAnswerGrader"/>), write the judgments in FastChat's layout, and report the means.
/// </summary>
/// <remarks>
/// <para>Metrics are on the judge's 1–10 scale, not proportions. MT-Bench: <c>mt_1</c>, <c>mt_2</c>, <c>mt_avg</c>;
/// Vicuna-Bench: <c>score</c>; both: <c>judgments</c> and <c>unscored</c> (judgments without a rating, excluded from
/// means). Groups: per category, the same metrics. Samples: one per judgment, id "{question_id}/turn{t}", with the user
/// turn as prompt, the answer as output, the judge's text as reference and the rating as score (−1 = none).</para>
/// <para>Reads <see cref="EvaluationRunOptions.Limit"/> (first N questions), <see cref="EvaluationRunOptions.BatchSize"/>
/// and <see cref="EvaluationRunOptions.Seed"/>; generation length is <see cref="AnswerGenerationOptions.MaxNewTokens"/>.
/// Progress counts answer turns generated plus judgments made.</para>
/// </remarks>
public sealed class JudgedBenchmarkTask : IEvaluationTask, IDisposable
{
    private readonly JudgedBenchmark _benchmark;
    private readonly IReadOnlyList<JudgeQuestion> _questions;
    private readonly IJudgeModel _judge;
    private readonly IConversationFormat _format;
    private readonly JudgedBenchmarkOptions _options;
    private bool _ownsJudge;

    /// <summary>A judged run of <paramref name="benchmark"/> over <paramref name="questions"/>, answers formatted by
    /// <paramref name="format"/> and graded by <paramref name="judge"/>.</summary>
    public JudgedBenchmarkTask(
        JudgedBenchmark benchmark, IReadOnlyList<JudgeQuestion> questions, IJudgeModel judge, IConversationFormat format, JudgedBenchmarkOptions options,
        string? name = null)
    {
        ArgumentNullException.ThrowIfNull(questions);
        ArgumentNullException.ThrowIfNull(judge);
        ArgumentNullException.ThrowIfNull(format);
        ArgumentNullException.ThrowIfNull(options);
        _benchmark = benchmark;
        _questions = questions;
        _judge = judge;
        _format = format;
        _options = options;
        Name = name ?? (benchmark == JudgedBenchmark.MtBench ? "mt_bench" : "vicuna_bench");
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc cref="FromSpec(EvaluationTaskSpec, ITextTokenizer?)"/>
    public static IEvaluationTask FromSpec(EvaluationTaskSpec spec) => FromSpec(spec, tokenizer: null);

    /// <summary>
    /// The task from the CLI's spec. The name picks the benchmark ("vicuna…" = Vicuna-Bench, anything else MT-Bench);
    /// <c>--data</c> is question.jsonl. Parameters: <c>judge</c> (judge.yaml, required), <c>template</c> (a conversation
    /// template name: vicuna_v1.1, chatml, llama-3, model; default: the model's own chat template when
    /// <paramref name="tokenizer"/> has one, else vicuna_v1.1), <c>output_dir</c>, <c>model_id</c>, <c>answers</c>,
    /// <c>references</c>, <c>temperature</c> (the turn budget is the run's MaxNewTokens).
    /// </summary>
    /// <exception cref="ArgumentException">A parameter is missing, unknown or invalid.</exception>
    public static IEvaluationTask FromSpec(EvaluationTaskSpec spec, ITextTokenizer? tokenizer)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var parameters = new TaskParameterReader(spec, "judge", "template", "output_dir", "model_id", "answers", "references", "temperature");
        var benchmark = spec.Name.Contains("vicuna", StringComparison.OrdinalIgnoreCase) ? JudgedBenchmark.VicunaBench : JudgedBenchmark.MtBench;
        var judgePath = parameters.String("judge")
            ?? throw new ArgumentException($"Task '{spec.Name}' needs a judge: --param judge=judge.yaml (base_url, model, api_key_env…).");
        var config = JudgeConfig.Load(judgePath);
        var templateName = parameters.String("template") ?? (tokenizer?.ChatTemplate is not null ? TemplateCatalog.Model : "vicuna_v1.1");
        var format = TemplateCatalog.Conversation(templateName, tokenizer);
        var defaults = new AnswerGenerationOptions();
        var temperature = parameters.Double("temperature");
        if (temperature is < 0) throw new ArgumentException($"Task '{spec.Name}': parameter 'temperature' must be ≥ 0, got {temperature}.");
        var options = new JudgedBenchmarkOptions
        {
            OutputDirectory = parameters.String("output_dir") ?? Path.Combine("eval-output", spec.Name),
            AnswersPath = parameters.String("answers"),
            ReferencesPath = parameters.String("references"),
            Parallel = config.Parallel,
            Generation = new AnswerGenerationOptions
            {
                ModelId = parameters.String("model_id") ?? defaults.ModelId,
                Temperature = temperature,
            },
        };
        var questions = JudgeQuestion.ReadJsonl(spec.DataPath);
        return new JudgedBenchmarkTask(benchmark, questions, new OpenAiCompatibleJudge(config), format, options, spec.Name) { _ownsJudge = true };
    }

    /// <summary>Releases the judge's HTTP client when this task created it (<see cref="FromSpec(EvaluationTaskSpec, ITextTokenizer?)"/>).</summary>
    public void Dispose()
    {
        if (_ownsJudge && _judge is IDisposable disposable) disposable.Dispose();
    }

    /// <summary>The answer file this run writes.</summary>
    public string AnswersFile => Path.Combine(_options.OutputDirectory, "model_answer", SafeFileName(_options.Generation.ModelId) + ".jsonl");

    /// <summary>The judgment file this run writes.</summary>
    public string JudgmentsFile => Path.Combine(_options.OutputDirectory, "model_judgment", SafeFileName(_judge.Name) + "_single.jsonl");

    /// <inheritdoc/>
    public EvaluationReport Evaluate(IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var questions = options.Limit > 0 ? _questions.Take(options.Limit).ToList() : _questions;
        if (questions.Count == 0) throw new ArgumentException($"Task '{Name}': no questions to evaluate.");
        if (_benchmark == JudgedBenchmark.VicunaBench && questions.FirstOrDefault(q => q.Turns.Count != 1) is { } twoTurn)
            throw new ArgumentException($"Task '{Name}' is Vicuna-Bench (single turn), but question {twoTurn.QuestionId} has {twoTurn.Turns.Count} turns; use mt_bench.");

        var generated = _options.AnswersPath is null ? questions.Sum(q => q.Turns.Count) : 0;
        var total = generated + SingleAnswerGrader.Count(questions);
        progress?.Report(new EvaluationProgress(0, total));

        IReadOnlyList<ModelAnswer> answers;
        if (_options.AnswersPath is { } answersPath)
        {
            answers = ModelAnswer.ReadJsonl(answersPath);
        }
        else
        {
            ArgumentNullException.ThrowIfNull(model);
            // The per-turn budget is the run's (--max-new-tokens; the registry's default for judged tasks is FastChat's 1024).
            answers = AnswerGenerator.Generate(questions, model, _format, _options.Generation with { MaxNewTokens = options.MaxNewTokens }, options,
                done => progress?.Report(new EvaluationProgress(done, total)), cancellationToken);
            ModelAnswer.WriteJsonl(AnswersFile, answers);
        }

        var modelId = _options.AnswersPath is null ? _options.Generation.ModelId : answers.FirstOrDefault()?.ModelId ?? _options.Generation.ModelId;
        var byId = ById(answers, _options.AnswersPath ?? AnswersFile);
        var references = _options.ReferencesPath is { } referencesPath ? ById(ModelAnswer.ReadJsonl(referencesPath), referencesPath) : null;
        var judgments = SingleAnswerGrader.Grade(questions, byId, references, _judge, modelId, _options.Parallel,
            done => progress?.Report(new EvaluationProgress(generated + done, total)), cancellationToken);
        Judgment.WriteJsonl(JudgmentsFile, judgments);

        var categoryOf = questions.ToDictionary(q => q.QuestionId, q => q.Category);
        var scores = JudgedScores.Compute(judgments, categoryOf);
        var questionById = questions.ToDictionary(q => q.QuestionId);
        var samples = judgments.Select(j => new EvaluationSample(
            $"{j.QuestionId}/turn{j.Turn}", questionById[j.QuestionId].Turns[j.Turn - 1], byId[j.QuestionId].Turns[j.Turn - 1], j.Text, j.Score,
            questionById[j.QuestionId].Category)).ToList();
        return new EvaluationReport(Name, questions.Count, Metrics(scores),
            scores.Categories.ToDictionary(c => c.Key, c => (IReadOnlyDictionary<string, double>)Metrics(c.Value)), samples);
    }

    private Dictionary<string, double> Metrics(JudgedScores scores)
    {
        var metrics = new Dictionary<string, double>();
        void Add(string name, double? value)
        {
            if (value is double v) metrics[name] = v;
        }

        if (_benchmark == JudgedBenchmark.MtBench)
        {
            Add("mt_1", scores.Turn1);
            Add("mt_2", scores.Turn2);
            Add("mt_avg", scores.Average);
        }
        else
        {
            Add("score", scores.Turn1);
        }

        metrics["judgments"] = scores.Judgments;
        metrics["unscored"] = scores.Unscored;
        return metrics;
    }

    private static Dictionary<string, ModelAnswer> ById(IReadOnlyList<ModelAnswer> answers, string path)
    {
        var byId = new Dictionary<string, ModelAnswer>(StringComparer.Ordinal);
        foreach (var answer in answers)
            if (!byId.TryAdd(answer.QuestionId, answer))
                throw new FedLlm.Data.DataFormatException(path, null, null, "question_id", $"'{answer.QuestionId}' has more than one answer");
        return byId;
    }

    // Judge names such as "meta-llama/Llama-3-70B" must not become folders.
    private static string SafeFileName(string name) => string.Concat(name.Select(c => c is '/' or '\\' or ':' || Path.GetInvalidFileNameChars().Contains(c) ? '_' : c));
}
