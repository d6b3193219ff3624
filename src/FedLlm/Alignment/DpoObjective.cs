using FedLlm.Modeling;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Alignment;

/// <summary>
/// Direct Preference Optimization (Rafailov et al., 2023) as a local objective: for each micro-batch, chosen and
/// rejected run through the policy in one batch, and the DPO loss (mean over the micro-batch's pairs, scaled by
/// 1 / accumulation steps so the step's gradient is that of the mean over all its pairs) is back-propagated.
/// </summary>
/// <remarks>Reference log-probabilities come from a <see cref="ReferenceLogProbCache"/>, filled before the step's dropout
/// seed is drawn (the reference pass runs in eval mode and must not sit between the seed and the policy pass).</remarks>
public sealed class DpoObjective : ITrainingObjective<PreferencePair, DpoMetrics>
{
    const string PairsKey = "pairs";
    private readonly TrainingOptions options;
    private readonly PreferenceCollator collator;
    private readonly bool ownsReference;

    /// <param name="reference">Reference values to use and fill; pass the same cache to every round of a federated client so
    /// π_ref is computed once per pair. Default: a new cache for the base model, owned (and disposed) by this objective.</param>
    /// <param name="options">The local training options (batch size, loss chunking).</param>
    /// <param name="dpo">β and label smoothing (validated here).</param>
    /// <param name="padTokenId">The tokenizer's padding id, for batching.</param>
    public DpoObjective(TrainingOptions options, DpoOptions dpo, int padTokenId, ReferenceLogProbCache? reference = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(dpo);
        dpo.Validate();
        this.options = options;
        Dpo = dpo;
        collator = new PreferenceCollator(padTokenId);
        ownsReference = reference is null;
        Reference = reference ?? new ReferenceLogProbCache();
    }

    /// <summary>The DPO knobs.</summary>
    public DpoOptions Dpo { get; }

    /// <summary>The reference log-probabilities this objective reads and fills.</summary>
    public ReferenceLogProbCache Reference { get; }

    /// <inheritdoc/>
    public string Name => "dpo";

    /// <summary>
    /// When the run will sample at least as many pairs as the list holds, computes every reference value up front in
    /// fixed batches of the list (TRL's precompute_ref_log_probs). A pair's value then does not depend on which other
    /// pairs a step batched it with (padding changes matmul shapes and so the last bits), so a run resumed from a
    /// checkpoint, which starts with an empty cache, continues bit for bit. Shorter runs over large lists compute lazily,
    /// per step, and a resume reproduces them only up to that rounding.
    /// </summary>
    public void BeforeTraining(LlamaForCausalLM model, IReadOnlyList<PreferencePair> pairs)
    {
        long sampled = (long)options.MaxSteps * options.BatchSize * options.GradientAccumulationSteps;
        if (sampled < pairs.Count || Reference.Count >= pairs.Count) return;
        Reference.Get(model, pairs, Enumerable.Range(0, pairs.Count).ToList(), collator, options.BatchSize, options.LossChunkTokens);
    }

    /// <inheritdoc/>
    /// <remarks>Computes the reference values of the step's pairs that are not cached yet.</remarks>
    public void BeforeStep(LlamaForCausalLM model, IReadOnlyList<PreferencePair> pairs, IReadOnlyList<int[]> microBatches) =>
        Reference.Get(model, pairs, microBatches.SelectMany(b => b).ToList(), collator, options.BatchSize, options.LossChunkTokens);

    /// <summary>1 / accumulation steps: every micro-batch holds the same number of pairs.</summary>
    public IReadOnlyList<double> LossWeights(IReadOnlyList<PreferencePair> pairs, IReadOnlyList<int[]> microBatches) =>
        microBatches.Select(_ => 1.0 / microBatches.Count).ToList();

    /// <inheritdoc/>
    public (DpoMetrics Metrics, long Tokens)? MicroBatch(LlamaForCausalLM model, IReadOnlyList<PreferencePair> pairs, int[] indices, double lossWeight)
    {
        var (referenceChosen, referenceRejected) = Reference.Get(model, pairs, indices, collator, options.BatchSize, options.LossChunkTokens);
        return MicroBatch(model, collator, indices.Select(i => pairs[i]).ToList(), referenceChosen, referenceRejected, Dpo, lossWeight,
            options.LossChunkTokens);
    }

    /// <summary>
    /// Forward and backward of one micro-batch: the DPO loss (mean over its pairs) × <paramref name="lossScale"/>, its
    /// gradients accumulated into the trainable parameters. Returns the micro-batch's metrics and its real tokens.
    /// </summary>
    public static (DpoMetrics Metrics, long Tokens) MicroBatch(LlamaForCausalLM model, PreferenceCollator collator,
        IReadOnlyList<PreferencePair> pairs, double[] referenceChosen, double[] referenceRejected, DpoOptions dpo, double lossScale, int chunkTokens)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(collator);
        ArgumentNullException.ThrowIfNull(dpo);
        using var scope = NewDisposeScope();
        var batch = collator.Collate(pairs);
        int n = batch.Pairs;
        if (referenceChosen.Length != n || referenceRejected.Length != n)
            throw new ArgumentException($"{referenceChosen.Length}/{referenceRejected.Length} reference values for {n} pairs");
        var device = model.Device;
        var refChosen = tensor(referenceChosen, device: device);                     // (n) float64
        var refRejected = tensor(referenceRejected, device: device);                 // (n) float64
        var (logProbs, _) = SequenceLogProbs.ForwardBackward(model,
            tensor(batch.InputIds, batch.Shape, device: device), tensor(batch.Labels, batch.Shape, device: device),
            lp => DpoLoss.PerPair(lp.narrow(0, 0, n), lp.narrow(0, n, n), refChosen, refRejected, dpo.Beta, dpo.LabelSmoothing).mean() * lossScale,
            chunkTokens);
        var metrics = DpoLoss.Metrics(logProbs[..n], logProbs[n..], referenceChosen, referenceRejected, dpo.Beta, dpo.LabelSmoothing);
        return (metrics, batch.RealTokens);
    }

    /// <summary>Pair-weighted means; a step always has pairs.</summary>
    public DpoMetrics Aggregate(IReadOnlyList<DpoMetrics> parts) => DpoMetrics.Aggregate(parts);

    /// <inheritdoc/>
    public double Loss(DpoMetrics metrics) => metrics.Loss;

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, double>? ToCheckpointRow(DpoMetrics metrics) =>
        new Dictionary<string, double>(metrics.ToTrlLog()) { [PairsKey] = metrics.Pairs };

    /// <inheritdoc/>
    public DpoMetrics FromCheckpointRow(double loss, IReadOnlyDictionary<string, double>? row, string checkpoint, int step)
    {
        if (row is null)
            throw new InvalidDataException($"{checkpoint}: trainer_state.json has no DPO metrics for step {step + 1}; it is not a DPO checkpoint");
        double Get(string key) => row.TryGetValue(key, out double v) ? v
            : throw new InvalidDataException($"{checkpoint}: trainer_state.json step {step + 1} lacks '{key}'; it is not a DPO checkpoint");
        return new DpoMetrics((int)Get(PairsKey), Get("loss"), Get("rewards/chosen"), Get("rewards/rejected"), Get("rewards/accuracies"),
            Get("logps/chosen"), Get("logps/rejected"));
    }

    /// <summary>Frees the reference cache if this objective created it.</summary>
    public void Dispose()
    {
        if (ownsReference) Reference.Dispose();
    }
}
