using FedLlm.Generation;

namespace FedLlm.Evaluation;

/// <summary>Generates greedy answers to many prompts in batches, reporting progress after each batch.</summary>
public static class GenerationRunner
{
    /// <summary>Generates an answer to each prompt (in batches of <see cref="EvaluationRunOptions.BatchSize"/>, up to
    /// its token budget, cut at <paramref name="stopStrings"/>), in prompt order.</summary>
    public static IReadOnlyList<string> Run(IReadOnlyList<string> prompts, IEvaluationModel model, EvaluationRunOptions options,
        IReadOnlyList<string> stopStrings, IProgress<EvaluationProgress>? progress, CancellationToken cancellationToken)
    {
        var generation = new GenerationOptions { MaxNewTokens = options.MaxNewTokens, StopStrings = stopStrings, Seed = options.Seed };
        var outputs = new List<string>(prompts.Count);
        progress?.Report(new EvaluationProgress(0, prompts.Count));
        foreach (var chunk in prompts.Chunk(Math.Max(1, options.BatchSize)))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var answers = model.Generate(chunk, generation, cancellationToken);
            if (answers.Count != chunk.Length) throw new InvalidOperationException($"the model answered {answers.Count} of {chunk.Length} prompts");
            outputs.AddRange(answers);
            progress?.Report(new EvaluationProgress(outputs.Count, prompts.Count));
        }
        return outputs;
    }

    /// <summary>The first <see cref="EvaluationRunOptions.Limit"/> items (all when 0); an empty result is an error naming the task.</summary>
    public static IReadOnlyList<T> Limit<T>(string task, IReadOnlyList<T> items, EvaluationRunOptions options)
    {
        var kept = options.Limit > 0 ? items.Take(options.Limit).ToList() : items;
        if (kept.Count == 0) throw new ArgumentException($"task '{task}': no items to evaluate");
        return kept;
    }
}
