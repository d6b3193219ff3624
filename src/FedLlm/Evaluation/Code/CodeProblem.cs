namespace FedLlm.Evaluation.Code;

/// <summary>One code problem as the scorer sees it: the prompt, how a raw generation becomes a program, and where generation stops.</summary>
/// <param name="Id">The benchmark's task id.</param>
/// <param name="Prompt">What the model continues.</param>
/// <param name="ToProgram">Raw generation → (the completion as scored, the complete program with tests).</param>
public sealed record CodeProblem(string Id, string Prompt, Func<string, (string Completion, string Program)> ToProgram);
