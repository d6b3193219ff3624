using FedLlm.Data;
using FedLlm.Modeling;
using static TorchSharp.torch;

namespace FedLlm.Training;

/// <summary>A step's (or micro-batch's) instruction-tuning metrics.</summary>
/// <param name="Loss">Mean cross-entropy over the labelled (response) tokens; NaN when there were none.</param>
/// <param name="LabelledTokens">Tokens the loss was taken on, the weight when micro-batches or steps are averaged.</param>
public sealed record SftStepMetrics(double Loss, long LabelledTokens);

/// <summary>
/// Supervised fine-tuning: the causal-LM loss on the response tokens of instruction examples (<see cref="CausalLmStep"/>).
/// </summary>
/// <param name="chunkTokens">Labelled rows projected onto the vocabulary at once (<see cref="TrainingOptions.LossChunkTokens"/>).</param>
/// <param name="padTokenId">The tokenizer's padding id, for batching.</param>
public sealed class SftObjective(int padTokenId, int chunkTokens) : ITrainingObjective<SftExample, SftStepMetrics>
{
    const string LabelledTokensKey = "labelled_tokens";
    private readonly SftCollator collator = new(padTokenId);

    /// <inheritdoc/>
    public string Name => "sft";

    /// <inheritdoc/>
    public void BeforeTraining(LlamaForCausalLM model, IReadOnlyList<SftExample> examples) { }

    /// <inheritdoc/>
    public void BeforeStep(LlamaForCausalLM model, IReadOnlyList<SftExample> examples, IReadOnlyList<int[]> microBatches) { }

    /// <summary>
    /// Each micro-batch's share of the step's labelled tokens, so the step's gradient is that of the mean over all its
    /// labelled tokens, whatever the padding of each micro-batch.
    /// </summary>
    public IReadOnlyList<double> LossWeights(IReadOnlyList<SftExample> examples, IReadOnlyList<int[]> microBatches)
    {
        var labelled = microBatches.Select(b => (long)b.Sum(i => examples[i].Labels.Count(l => l != SftExampleBuilder.IgnoreIndex))).ToList();
        long total = labelled.Sum();
        return labelled.Select(n => (double)n / Math.Max(1, total)).ToList();
    }

    /// <inheritdoc/>
    public (SftStepMetrics Metrics, long Tokens)? MicroBatch(LlamaForCausalLM model, IReadOnlyList<SftExample> examples, int[] indices, double lossWeight)
    {
        var batch = collator.Collate(indices.Select(i => examples[i]).ToList());
        if (batch.LossTokenCount == 0) return null;
        var ids = tensor(batch.InputIds, batch.Shape, device: model.Device);
        var labels = tensor(batch.Labels, batch.Shape, device: model.Device);
        var (loss, n) = CausalLmStep.ForwardBackward(model, ids, labels, attentionMask: null, lossWeight, chunkTokens);
        return (new SftStepMetrics(loss, n), batch.AttentionMask.Sum());
    }

    /// <summary>The token-weighted mean loss; NaN for no tokens.</summary>
    public SftStepMetrics Aggregate(IReadOnlyList<SftStepMetrics> parts)
    {
        // A plain left-to-right sum: the order fixes the last bits, which resume and federation tests compare exactly.
        double weighted = 0;
        long tokens = 0;
        foreach (var part in parts)
        {
            weighted += part.Loss * part.LabelledTokens;
            tokens += part.LabelledTokens;
        }
        return new SftStepMetrics(tokens > 0 ? weighted / tokens : double.NaN, tokens);
    }

    /// <inheritdoc/>
    public double Loss(SftStepMetrics metrics) => metrics.Loss;

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, double>? ToCheckpointRow(SftStepMetrics metrics) =>
        new Dictionary<string, double> { [LabelledTokensKey] = metrics.LabelledTokens };

    /// <summary>Checkpoints written before the trainers were unified carry only the loss; their token counts read as 0.</summary>
    public SftStepMetrics FromCheckpointRow(double loss, IReadOnlyDictionary<string, double>? row, string checkpoint, int step) =>
        new(loss, row is not null && row.TryGetValue(LabelledTokensKey, out double n) ? (long)n : 0);

    /// <summary>Nothing to free: the objective holds no tensors.</summary>
    public void Dispose() { }
}
