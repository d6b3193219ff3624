using FedLlm.Generation;

namespace FedLlm.Evaluation.Code;

/// <summary>
/// Functional correctness (Chen et al. 2021): sample n completions per problem, run each with its tests in
/// <see cref="PythonSandbox"/>, and report the mean unbiased pass@k.
/// </summary>
/// <remarks>
/// Problems are processed in chunks of about <see cref="EvaluationRunOptions.BatchSize"/> prompts: a chunk's
/// completions are generated in one model call, then executed in parallel, then progress is reported per problem.
/// Every sample is one <see cref="EvaluationSample"/>: <c>Output</c> is the completion, <c>Reference</c> the execution
/// outcome ("passed", "failed: …last stderr line", "timed out", "error: …"), <c>Score</c> 1 or 0.
/// Metrics: <c>pass@k</c> for each reported k, and the fractions of samples that <c>passed</c>, <c>failed</c>,
/// <c>timed_out</c> or ended in an <c>error</c>.
/// </remarks>
public static class FunctionalCorrectness
{
    /// <summary>Generates <see cref="CodeSamplingOptions.Samples"/> completions of each problem, runs them with its
    /// tests in the sandbox and reports pass@k under <paramref name="taskName"/>.</summary>
    /// <param name="taskName">The task's name in the report.</param>
    /// <param name="problems">The problems: prompt and how a completion becomes a test program.</param>
    /// <param name="stopStrings">Where a completion is cut.</param>
    /// <param name="sampling">Samples, temperature, k values and sandbox.</param>
    /// <param name="model">The model that writes the completions.</param>
    /// <param name="options">Batch size, token budget and seed.</param>
    /// <param name="progress">Told after each problem, or null.</param>
    /// <param name="cancellationToken">Stops between chunks.</param>
    public static EvaluationReport Evaluate(
        string taskName, IReadOnlyList<CodeProblem> problems, IReadOnlyList<string> stopStrings, CodeSamplingOptions sampling,
        IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(problems);
        ArgumentNullException.ThrowIfNull(sampling);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        sampling.Validate();
        if (options.Limit > 0) problems = problems.Take(options.Limit).ToList();
        if (problems.Count == 0) throw new ArgumentException($"Task '{taskName}': no problems to evaluate.");

        var sandbox = new PythonSandbox(options.UnsafeCodeExecution ? sampling.Sandbox with { UnsafeCodeExecution = true } : sampling.Sandbox);
        var n = sampling.Samples;
        var problemsPerChunk = Math.Max(1, options.BatchSize / n);
        var samples = new List<EvaluationSample>(problems.Count * n);
        var counts = new List<(int Samples, int Passed)>(problems.Count);
        var statusCounts = new Dictionary<ExecutionStatus, int>();
        var chunkIndex = 0;
        progress?.Report(new EvaluationProgress(0, problems.Count));
        foreach (var chunk in problems.Chunk(problemsPerChunk))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var prompts = chunk.SelectMany(p => Enumerable.Repeat(p.Prompt, n)).ToList();
            var generation = new GenerationOptions
            {
                MaxNewTokens = options.MaxNewTokens,
                Temperature = sampling.EffectiveTemperature,
                StopStrings = stopStrings,
                // A different seed per call: with one seed, every chunk would draw the same random stream.
                Seed = options.Seed + chunkIndex++,
            };
            var outputs = model.Generate(prompts, generation, cancellationToken);
            if (outputs.Count != prompts.Count)
                throw new InvalidOperationException($"The model returned {outputs.Count} generations for {prompts.Count} prompts.");
            var built = outputs.Select((output, i) => chunk[i / n].ToProgram(output)).ToList();
            var results = sandbox.RunAll(built.Select(b => b.Program).ToList(), cancellationToken: cancellationToken);
            for (var p = 0; p < chunk.Length; p++)
            {
                var passed = 0;
                for (var s = 0; s < n; s++)
                {
                    var i = p * n + s;
                    var result = results[i];
                    statusCounts[result.Status] = statusCounts.GetValueOrDefault(result.Status) + 1;
                    if (result.Status == ExecutionStatus.Passed) passed++;
                    samples.Add(new EvaluationSample(
                        n == 1 ? chunk[p].Id : $"{chunk[p].Id}#{s}", chunk[p].Prompt, built[i].Completion, Describe(result),
                        result.Status == ExecutionStatus.Passed ? 1 : 0));
                }

                counts.Add((n, passed));
            }

            progress?.Report(new EvaluationProgress(counts.Count, problems.Count));
        }

        var metrics = new Dictionary<string, double>();
        foreach (var (k, value) in PassAtK.Mean(counts, sampling.K)) metrics[$"pass@{k}"] = value;
        double total = samples.Count;
        metrics["passed"] = statusCounts.GetValueOrDefault(ExecutionStatus.Passed) / total;
        metrics["failed"] = statusCounts.GetValueOrDefault(ExecutionStatus.Failed) / total;
        metrics["timed_out"] = statusCounts.GetValueOrDefault(ExecutionStatus.TimedOut) / total;
        metrics["error"] = statusCounts.GetValueOrDefault(ExecutionStatus.Error) / total;
        return new EvaluationReport(taskName, problems.Count, metrics, new Dictionary<string, IReadOnlyDictionary<string, double>>(), samples);
    }

    /// <summary>The outcome in a line: the status and, for a failure, the traceback's last line (the exception).</summary>
    public static string Describe(ExecutionResult result) => result.Status switch
    {
        ExecutionStatus.Passed => "passed",
        ExecutionStatus.TimedOut => $"timed out after {result.Elapsed.TotalSeconds:0.0} s",
        ExecutionStatus.Failed => "failed: " + LastLine(result.StderrTail),
        _ => "error: " + LastLine(result.StderrTail),
    };

    private static string LastLine(string text)
    {
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return lines.Length == 0 ? "(no output)" : lines[^1];
    }
}
