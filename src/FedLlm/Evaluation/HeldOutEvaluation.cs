using FedLlm.Runtime;
using FedLlm.Data;
using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Tokenization;
using static TorchSharp.torch;

namespace FedLlm.Evaluation;

/// <summary>Scores of a model on held-out instruction examples.</summary>
public sealed record HeldOutScores(double Loss, double ExactMatch, int Examples);

/// <summary>
/// Held-out loss (mean over response tokens) and exact match of greedy answers: the answer's first line, trimmed and
/// compared case-insensitively with the reference response.
/// </summary>
public sealed class HeldOutEvaluation(LlamaForCausalLM model, ITextTokenizer tokenizer, PromptTemplate template, int maxSequenceLength = 512)
{
    public HeldOutScores Evaluate(IReadOnlyList<InstructionExample> examples, int batchSize = 16, int maxNewTokens = 8)
    {
        if (examples.Count == 0) throw new ArgumentException("no held-out examples", nameof(examples));
        return new HeldOutScores(Loss(examples, batchSize), ExactMatch(examples, batchSize, maxNewTokens), examples.Count);
    }

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

    public double ExactMatch(IReadOnlyList<InstructionExample> examples, int batchSize = 16, int maxNewTokens = 8)
    {
        var answers = Answers(examples, batchSize, maxNewTokens);
        int correct = 0;
        for (int i = 0; i < examples.Count; i++)
            if (NormalizeAnswer(answers[i]) == NormalizeAnswer(examples[i].Response)) correct++;
        return (double)correct / examples.Count;
    }

    /// <summary>The greedy answers to the examples' instructions (up to the first newline or <paramref name="maxNewTokens"/>).</summary>
    public IReadOnlyList<string> Answers(IReadOnlyList<InstructionExample> examples, int batchSize = 16, int maxNewTokens = 8)
    {
        var generator = new TextGenerator(model, tokenizer);
        var options = new GenerationOptions { MaxNewTokens = maxNewTokens, StopStrings = new[] { "\n" } };
        var answers = new List<string>(examples.Count);
        foreach (var chunk in examples.Chunk(batchSize))
            answers.AddRange(generator.Generate(chunk.Select(e => template.FormatPrompt(e.Instruction)).ToList(), options));
        return answers;
    }

    /// <summary>What exact match compares: the first line, trimmed, without a final period, lower-case.</summary>
    public static string NormalizeAnswer(string text) => text.Trim().Split('\n')[0].Trim().TrimEnd('.').ToLowerInvariant();
}
