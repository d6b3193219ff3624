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
    /// <summary>lm-eval's few-shot problems (list_fewshot_samples), in order.</summary>
    public static IReadOnlyList<string> DefaultFewShotIds { get; } = ["2", "3", "4"];

    private readonly IReadOnlyList<MbppProblem> _problems;
    private readonly IReadOnlyList<MbppProblem> _shotPool;
    private readonly CodeSamplingOptions _sampling;

    /// <param name="problems">The problems to score (shots among them are skipped).</param>
    /// <param name="shotPool">Candidates for few-shot examples, in order; default: <see cref="DefaultFewShotIds"/> found in <paramref name="problems"/>.</param>
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
    /// and <c>challenge_tests</c> (true: also run challenge_test_list).
    /// </summary>
    public static IEvaluationTask FromSpec(EvaluationTaskSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var parameters = new TaskParameterReader(spec, [.. CodeSamplingOptions.ParameterNames, "fewshot", "challenge_tests"]);
        var sampling = CodeSamplingOptions.Read(parameters) with { ChallengeTests = parameters.Bool("challenge_tests") ?? false };
        var pool = parameters.String("fewshot") is { } shots ? MbppProblem.ReadJsonl(shots) : null;
        return new MbppTask(MbppProblem.ReadJsonl(spec.DataPath), sampling, pool, spec.Name);
    }

    public string Name { get; }

    /// <summary>The prompt of <paramref name="problem"/> after <paramref name="fewShot"/> examples.</summary>
    /// <exception cref="ArgumentException">The shot pool has fewer than <paramref name="fewShot"/> problems.</exception>
    public string FormatPrompt(MbppProblem problem, int fewShot)
    {
        ArgumentNullException.ThrowIfNull(problem);
        var shots = Shots(fewShot);
        return string.Concat(shots.Select(s => s.FewShotExample() + "\n\n")) + problem.Prompt();
    }

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
