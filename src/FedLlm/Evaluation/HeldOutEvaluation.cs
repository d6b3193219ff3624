using FedLlm.Runtime;
using FedLlm.Data;
using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Tokenization;
using static TorchSharp.torch;

namespace FedLlm.Evaluation;

/// <summary>Scores of a model on held-out instruction examples.</summary>
public sealed record HeldOutScores(double Loss, double ExactMatch, int Examples)
{
    /// <summary>The model's answers in example order, normalised as exact match compares them
    /// (<see cref="HeldOutEvaluation.NormalizeAnswer"/>), for per-answer metrics such as macro-F1.</summary>
    public IReadOnlyList<string> Answers { get; init; } = [];
}

/// <summary>
/// Held-out loss (mean over response tokens) and exact match of greedy answers: the answer's first line, trimmed and
/// compared case-insensitively with the reference response.
/// </summary>
public sealed class HeldOutEvaluation(LlamaForCausalLM model, ITextTokenizer tokenizer, PromptTemplate template, int maxSequenceLength = 512)
{
    /// <summary>Held-out loss and exact match over <paramref name="examples"/>, with the answers; the model's
    /// train/eval mode is restored afterwards.</summary>
    /// <exception cref="ArgumentException">No examples.</exception>
    public HeldOutScores Evaluate(IReadOnlyList<InstructionExample> examples, int batchSize = 16, int maxNewTokens = 8)
    {
        if (examples.Count == 0) throw new ArgumentException("no held-out examples", nameof(examples));
        double loss = Loss(examples, batchSize);
        var answers = Answers(examples, batchSize, maxNewTokens);
        return new HeldOutScores(loss, ExactMatchOf(examples, answers), examples.Count) { Answers = answers };
    }

    /// <summary>Mean causal-LM loss per response token over <paramref name="examples"/> (NaN when none has a response
    /// token).</summary>
    public double Loss(IReadOnlyList<InstructionExample> examples, int batchSize = 16)
    {
        var builder = new SftExampleBuilder(tokenizer, template, maxSequenceLength);
        var collator = new SftCollator(tokenizer);
        bool wasTraining = model.training;
        model.eval();
        using var noGrad = no_grad();
        double sum = 0;
        long count = 0;
        try
        {
            foreach (var chunk in examples.Chunk(batchSize))
            {
                using var scope = NewDisposeScope();
                var batch = collator.Collate(chunk.Select(builder.Build).ToList());
                var ids = tensor(batch.InputIds, batch.Shape, device: model.Device);
                var labels = tensor(batch.Labels, batch.Shape, device: model.Device);
                using var logits = model.Forward(ids);
                var loss = LlamaForCausalLM.CausalLmLoss(logits, labels);
                long n = batch.LossTokenCount;
                sum += loss.ToScalarDouble() * n;
                count += n;
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return count > 0 ? sum / count : double.NaN;
    }

    /// <summary>The share of <paramref name="examples"/> whose greedy answer (up to <paramref name="maxNewTokens"/>
    /// tokens) equals the reference after normalisation.</summary>
    public double ExactMatch(IReadOnlyList<InstructionExample> examples, int batchSize = 16, int maxNewTokens = 8) =>
        ExactMatchOf(examples, Answers(examples, batchSize, maxNewTokens));

    /// <summary>Greedy answers to the examples' prompts, normalised (<see cref="NormalizeAnswer"/>).</summary>
    public IReadOnlyList<string> Answers(IReadOnlyList<InstructionExample> examples, int batchSize = 16, int maxNewTokens = 8)
    {
        var generator = new TextGenerator(model, tokenizer);
        var options = new GenerationOptions { MaxNewTokens = maxNewTokens, StopStrings = new[] { "\n" } };
        var answers = new List<string>(examples.Count);
        foreach (var chunk in examples.Chunk(batchSize))
            answers.AddRange(generator.Generate(chunk.Select(e => template.FormatPrompt(e.Instruction)).ToList(), options).Select(NormalizeAnswer));
        return answers;
    }

    static double ExactMatchOf(IReadOnlyList<InstructionExample> examples, IReadOnlyList<string> answers) =>
        (double)examples.Zip(answers).Count(p => NormalizeAnswer(p.First.Response) == p.Second) / examples.Count;

    /// <summary>What exact match compares: the first line, trimmed, without a final period, lower case.</summary>
    public static string NormalizeAnswer(string text) => text.Trim().Split('\n')[0].Trim().TrimEnd('.').ToLowerInvariant();
}
