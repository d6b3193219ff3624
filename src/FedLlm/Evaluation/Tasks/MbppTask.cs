using FedLlm.Evaluation.Code;

namespace FedLlm.Evaluation.Tasks;

/// <summary>
/// MBPP (Austin et al. 2021) as lm-evaluation-harness's <c>mbpp</c> task asks it: the prompt
/// "You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n{tests}\n[BEGIN]\n",
/// generation until <c>[DONE]</c>, the code taken from a fenced block if the model wrote one, then setup code + code +
/// the asserts run in <see cref="PythonSandbox"/>. Reports pass@k (<see cref="FunctionalCorrectness"/>).
/// </summary>
/// <remarks>
/// <para>Few-shot (<see cref="EvaluationRunOptions.FewShot"/>, lm-eval's default is 3) prepends the first N problems of
/// the shot pool, each as prompt + code + "\n[DONE]", separated by a blank line as lm-eval's default fewshot_delimiter.
/// The pool is lm-eval's: MBPP task ids 2, 3, 4 (from the published prompt split), taken from the data file or from
/// the file named by the <c>fewshot</c> parameter; a problem used as a shot is not scored.</para>
/// <para>Zero-shot is the same prompt without examples.</para>
/// </remarks>
public sealed class MbppTask : IEvaluationTask
{
    /// <summary>
    /// MBPP's published splits of the full 974-problem file by task id (the paper's §2.1, and the Hugging Face dataset):
    /// prompt 1–10, test 11–510, validation 511–600, train 601–974. lm-evaluation-harness scores the test split.
    /// </summary>
    public static IReadOnlyDictionary<string, (int First, int Last)> Splits { get; } = new Dictionary<string, (int, int)>
    {
        ["prompt"] = (1, 10),
        ["test"] = (11, 510),
        ["validation"] = (511, 600),
        ["train"] = (601, 974),
    };

    /// <summary>lm-eval's few-shot problems (list_fewshot_samples), in order.</summary>
    public static IReadOnlyList<string> DefaultFewShotIds { get; } = ["2", "3", "4"];

    private readonly IReadOnlyList<MbppProblem> _problems;
    private readonly IReadOnlyList<MbppProblem> _shotPool;
    private readonly CodeSamplingOptions _sampling;

    /// <param name="problems">The problems to score (shots among them are skipped).</param>
    /// <param name="shotPool">Candidates for few-shot examples, in order; default: <see cref="DefaultFewShotIds"/> found in <paramref name="problems"/>.</param>
    /// <param name="sampling">Samples, temperature, k values and sandbox (validated here).</param>
    /// <param name="name">The task's name in reports.</param>
    public MbppTask(IReadOnlyList<MbppProblem> problems, CodeSamplingOptions sampling, IReadOnlyList<MbppProblem>? shotPool = null, string name = "mbpp")
    {
        ArgumentNullException.ThrowIfNull(problems);
        ArgumentNullException.ThrowIfNull(sampling);
        sampling.Validate();
        _problems = problems;
        _sampling = sampling;
        _shotPool = shotPool ?? DefaultFewShotIds.Select(id => problems.FirstOrDefault(p => p.TaskId == id)).OfType<MbppProblem>().ToList();
        Name = name;
    }

    /// <summary>
    /// The task from the CLI's spec: <c>--data mbpp.jsonl</c> and the code parameters (<c>samples</c>, <c>temperature</c>, <c>k</c>,
    /// <c>timeout</c>, <c>memory_mb</c>, <c>workers</c>, <c>python</c>), plus <c>fewshot</c> (a JSONL file of shot problems)
    /// <c>challenge_tests</c> (true: also run challenge_test_list) and <c>split</c> (prompt, test, validation, train: score
    /// only that split's task ids, for the full mbpp.jsonl; default: every problem in the file).
    /// </summary>
    public static IEvaluationTask FromSpec(EvaluationTaskSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var parameters = new TaskParameterReader(spec, [.. CodeSamplingOptions.ParameterNames, "fewshot", "challenge_tests", "split"]);
        var sampling = CodeSamplingOptions.Read(parameters) with { ChallengeTests = parameters.Bool("challenge_tests") ?? false };
        var all = MbppProblem.ReadJsonl(spec.DataPath);
        // Shots come from the whole file (lm-eval's are ids 2–4, in the prompt split) before a split narrows the scored set.
        var pool = parameters.String("fewshot") is { } shots
            ? MbppProblem.ReadJsonl(shots)
            : DefaultFewShotIds.Select(id => all.FirstOrDefault(p => p.TaskId == id)).OfType<MbppProblem>().ToList();
        var problems = all;
        if (parameters.String("split") is { } split)
        {
            if (!Splits.TryGetValue(split, out var range))
                throw new ArgumentException($"Task '{spec.Name}': unknown split '{split}'. Known: {string.Join(", ", Splits.Keys)}.");
            problems = all.Where(p => int.TryParse(p.TaskId, out var id) && id >= range.First && id <= range.Last).ToList();
            if (problems.Count == 0)
                throw new ArgumentException($"Task '{spec.Name}': {spec.DataPath} has no problem with a task id in the {split} split ({range.First}–{range.Last}).");
        }

        return new MbppTask(problems, sampling, pool, spec.Name);
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <summary>The prompt of <paramref name="problem"/> after <paramref name="fewShot"/> examples.</summary>
    /// <exception cref="ArgumentException">The shot pool has fewer than <paramref name="fewShot"/> problems.</exception>
    public string FormatPrompt(MbppProblem problem, int fewShot)
    {
        ArgumentNullException.ThrowIfNull(problem);
        var shots = Shots(fewShot);
        return string.Concat(shots.Select(s => s.FewShotExample() + "\n\n")) + problem.Prompt();
    }

    /// <inheritdoc/>
    public EvaluationReport Evaluate(IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var shotIds = Shots(options.FewShot).Select(s => s.TaskId).ToHashSet(StringComparer.Ordinal);
        var problems = _problems.Where(p => !shotIds.Contains(p.TaskId)).Select(p => new CodeProblem(p.TaskId, FormatPrompt(p, options.FewShot), generation =>
        {
            var code = MbppProblem.ExtractCode(Cut(generation));
            return (code, p.Program(code, _sampling.ChallengeTests));
        })).ToList();
        return FunctionalCorrectness.Evaluate(Name, problems, ["[DONE]"], _sampling, model, options, progress, cancellationToken);
    }

    private IReadOnlyList<MbppProblem> Shots(int fewShot)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fewShot);
        if (fewShot > _shotPool.Count)
            throw new ArgumentException(
                $"Task '{Name}': {fewShot}-shot needs {fewShot} example problems, but only {_shotPool.Count} are available " +
                $"(MBPP task ids {string.Join(", ", DefaultFewShotIds)} in the data file, or a file given with --param fewshot=FILE).");
        return _shotPool.Take(fewShot).ToList();
    }

    // A model that ignores the stop string may still write [DONE]; nothing after it is code.
    private static string Cut(string generation)
    {
        var at = generation.IndexOf("[DONE]", StringComparison.Ordinal);
        return at < 0 ? generation : generation[..at];
    }
}
