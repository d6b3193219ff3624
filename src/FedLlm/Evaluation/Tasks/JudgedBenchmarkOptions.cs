using FedLlm.Evaluation.Judge;

namespace FedLlm.Evaluation.Tasks;

/// <summary>Where a judged run writes its files and how it generates.</summary>
public sealed record JudgedBenchmarkOptions
{
    /// <summary>Answers go to <c>{dir}/model_answer/{model_id}.jsonl</c>, judgments to <c>{dir}/model_judgment/{judge}_single.jsonl</c>, as FastChat lays them out.</summary>
    public string OutputDirectory { get; init; } = "eval-output";

    /// <summary>How the evaluated model answers: model id, token budget and temperatures.</summary>
    public AnswerGenerationOptions Generation { get; init; } = new();

    /// <summary>Judge these answers (FastChat answer JSONL) instead of generating; the model is then not used.</summary>
    public string? AnswersPath { get; init; }

    /// <summary>Reference answers for math/reasoning/coding (FastChat answer JSONL), where questions carry no <c>reference</c>.</summary>
    public string? ReferencesPath { get; init; }

    /// <summary>Concurrent judge requests.</summary>
    public int Parallel { get; init; } = 1;
}
