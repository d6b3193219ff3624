namespace FedLlm.Evaluation;

/// <summary>A task as the CLI or a run config names it: the task's name, its data file and its own parameters.</summary>
/// <param name="Name">The registry name ("mmlu", "humaneval", "mt_bench"…).</param>
/// <param name="DataPath">The benchmark file (or folder) on local disk.</param>
/// <param name="Parameters">Task-specific settings (<c>--param key=value</c>), read by the task's <c>FromSpec</c>.</param>
public sealed record EvaluationTaskSpec(string Name, string DataPath, IReadOnlyDictionary<string, string> Parameters);
