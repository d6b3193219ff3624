using FedLlm.Evaluation.Code;

namespace FedLlm.Evaluation.Tasks;

/// <summary>
/// HumanEval (Chen et al. 2021, openai/human-eval): complete each function from its signature and docstring; the
/// completion is the generation cut at the standard stop sequences, and the program prompt + completion + test +
/// <c>check(entry_point)</c> is run in <see cref="PythonSandbox"/>. Reports pass@k (<see cref="FunctionalCorrectness"/>).
/// </summary>
/// <remarks>
/// Reads <see cref="EvaluationRunOptions.Limit"/>, <see cref="EvaluationRunOptions.BatchSize"/>,
/// <see cref="EvaluationRunOptions.MaxNewTokens"/> and <see cref="EvaluationRunOptions.Seed"/>; few-shot does not apply.
/// </remarks>
public sealed class HumanEvalTask : IEvaluationTask
{
    private readonly IReadOnlyList<HumanEvalProblem> _problems;
    private readonly CodeSamplingOptions _sampling;

    /// <summary>The task over <paramref name="problems"/>, sampled as <paramref name="sampling"/> says (validated here)
    /// and reported as <paramref name="name"/>.</summary>
    public HumanEvalTask(IReadOnlyList<HumanEvalProblem> problems, CodeSamplingOptions sampling, string name = "humaneval")
    {
        ArgumentNullException.ThrowIfNull(problems);
        ArgumentNullException.ThrowIfNull(sampling);
        sampling.Validate();
        _problems = problems;
        _sampling = sampling;
        Name = name;
    }

    /// <summary>
    /// The task from the CLI's spec: <c>--data HumanEval.jsonl</c> and the parameters <c>samples</c>, <c>temperature</c>,
    /// <c>k</c> ("1,10,100"), <c>timeout</c> (seconds per program), <c>memory_mb</c>, <c>workers</c>, <c>python</c>.
    /// </summary>
    public static IEvaluationTask FromSpec(EvaluationTaskSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var parameters = new TaskParameterReader(spec, CodeSamplingOptions.ParameterNames);
        return new HumanEvalTask(HumanEvalProblem.ReadJsonl(spec.DataPath), CodeSamplingOptions.Read(parameters), spec.Name);
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public EvaluationReport Evaluate(IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var problems = _problems.Select(p => new CodeProblem(p.TaskId, p.Prompt, generation =>
        {
            var completion = HumanEvalProblem.Truncate(generation);
            return (completion, p.Program(completion));
        })).ToList();
        return FunctionalCorrectness.Evaluate(Name, problems, HumanEvalProblem.StopSequences, _sampling, model, options, progress, cancellationToken);
    }
}
