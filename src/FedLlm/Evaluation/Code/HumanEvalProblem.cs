namespace FedLlm.Evaluation.Code;

/// <summary>
/// One HumanEval problem in its published JSONL layout (openai/human-eval, data/HumanEval.jsonl.gz): a function
/// signature with docstring to complete, the reference body, and a <c>check(candidate)</c> test function.
/// </summary>
public sealed record HumanEvalProblem(string TaskId, string Prompt, string CanonicalSolution, string Test, string EntryPoint)
{
    /// <summary>
    /// Where a completion of the function body ends, as human-eval/Codex cut it: the start of the next top-level
    /// statement (the model moves on to another function, a class, a comment block, a main guard or a print).
    /// </summary>
    public static IReadOnlyList<string> StopSequences { get; } = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"];

    /// <summary>Reads a HumanEval JSONL file (task_id, prompt, canonical_solution, test, entry_point).</summary>
    /// <exception cref="FedLlm.Data.DataFormatException">
    /// A record is malformed, or its entry_point is not a Python identifier; the message names file, line, field and problem.
    /// </exception>
    public static IReadOnlyList<HumanEvalProblem> ReadJsonl(string path) => EvaluationJsonl.Read(path, r =>
    {
        var problem = new HumanEvalProblem(
            r.Id("task_id"), r.String("prompt"), r.OptionalString("canonical_solution") ?? "", r.String("test"), r.String("entry_point"));
        if (!PythonIdentifier.IsValid(problem.EntryPoint))
            throw r.Error("entry_point", $"problem {problem.TaskId}: '{problem.EntryPoint}' is not a Python function name (an identifier, " +
                                         "not a keyword); it is pasted into the program as check(entry_point), so nothing else is accepted");
        return problem;
    });

    /// <summary>The generation cut at the first stop sequence.</summary>
    public static string Truncate(string generation)
    {
        ArgumentNullException.ThrowIfNull(generation);
        var end = generation.Length;
        foreach (var stop in StopSequences)
        {
            var at = generation.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && at < end) end = at;
        }

        return generation[..end];
    }

    /// <summary>The program human-eval's check_correctness runs: prompt + completion + test + <c>check(entry_point)</c>.</summary>
    /// <exception cref="ArgumentException"><see cref="EntryPoint"/> is not a Python identifier (it would be pasted into code).</exception>
    public string Program(string completion)
    {
        if (!PythonIdentifier.IsValid(EntryPoint))
            throw new ArgumentException($"HumanEval problem {TaskId}: entry_point '{EntryPoint}' is not a Python function name.");
        return Prompt + completion + "\n" + Test + "\n" + $"check({EntryPoint})" + "\n";
    }
}
