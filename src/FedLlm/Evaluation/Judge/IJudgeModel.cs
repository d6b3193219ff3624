namespace FedLlm.Evaluation.Judge;

/// <summary>The LLM that grades answers: one system prompt and one user prompt in, the judgment's text out.</summary>
/// <remarks>Implementations must be safe to call from several threads (judgments run in parallel).</remarks>
public interface IJudgeModel
{
    /// <summary>The judge model's name, written into each judgment (FastChat's <c>judge[0]</c>).</summary>
    string Name { get; }

    /// <summary>The judge's reply at temperature 0.</summary>
    string Complete(string systemPrompt, string userPrompt, CancellationToken cancellationToken = default);
}
