namespace FedLlm.Evaluation.Judge;

/// <summary>How answers are generated for a judged benchmark.</summary>
public sealed record AnswerGenerationOptions
{
    /// <summary>The name written as <c>model_id</c> and <c>model</c> into the answer and judgment files.</summary>
    public string ModelId { get; init; } = "fedllm";

    /// <summary>One temperature for every question; null = FastChat's per-category temperatures (<see cref="AnswerGenerator.CategoryTemperature"/>).</summary>
    public double? Temperature { get; init; }

    /// <summary>Token budget per turn (FastChat's gen_model_answer default: 1024).</summary>
    public int MaxNewTokens { get; init; } = 1024;
}
