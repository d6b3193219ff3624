namespace FedLlm.Evaluation;

/// <summary>What the user asked for: a task name, its data (a file or folder) and the task's own key=value settings.</summary>
/// <remarks>Tasks read <see cref="Parameters"/> through TaskParameterReader, which refuses keys a task does not know.</remarks>
public sealed record EvaluationTaskSpec(string Name, string DataPath, IReadOnlyDictionary<string, string> Parameters);
