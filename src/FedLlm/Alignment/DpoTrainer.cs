using FedLlm.Runtime;
using System.Diagnostics;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Alignment;

/// <summary>Reported after every DPO optimizer step.</summary>
public sealed record DpoProgress(int Step, int TotalSteps, DpoMetrics Metrics, double LearningRate, double GradNorm, long Tokens,
    double TokensPerSecond, TimeSpan Elapsed);

/// <summary>One DPO optimizer step's outcome: the step's metrics over all its pairs, the pre-clip gradient norm, tokens seen.</summary>
public sealed record DpoStepResult(DpoMetrics Metrics, double GradNorm, long Tokens);

/// <summary>
/// Direct Preference Optimization (Rafailov et al., 2023) of a model's LoRA adapters on tokenized preference pairs,
/// with the same knobs as <see cref="LocalTrainer"/>: AdamW, learning-rate schedule, gradient accumulation and
/// clipping, a repeatable data order, and hooks for federated algorithms.
/// </summary>
/// <remarks>
/// <para>A step: fetch (or compute once) the reference log-probabilities of its pairs with <see cref="ReferencePolicy"/>;
/// seed dropout from (seed, step); for each micro-batch, run chosen and rejected through the policy in one batch,
/// take the DPO loss (mean over the micro-batch's pairs, scaled by 1 / accumulation steps so the step's gradient is that
/// of the mean over all its pairs) and back-propagate; add <see cref="ExtraLoss"/>; clip; AdamW.</para>
/// <para>As for <see cref="LocalTrainer"/>, step s is a pure function of (seed, s, adapter, optimizer state and the
/// cached reference values): the pairs of step s come from a per-epoch permutation seeded by (seed, epoch), with the
/// same permutation LocalTrainer uses.</para>
/// </remarks>
public sealed class DpoTrainer : IAdapterTrainer
{
    private readonly LlamaForCausalLM model;
    private readonly TorchSharp.torch.Generator dropoutGenerator = new(0);
    private readonly TrainingOptions options;
    private readonly DpoOptions dpo;
    private readonly PreferenceCollator collator;
    private readonly bool ownsReference;
    private readonly List<DpoMetrics> stepMetrics = new();
    private readonly ExampleOrder order;

    /// <summary>Creates a trainer over the model's LoRA adapters.</summary>
    /// <param name="reference">Reference values to use and fill; pass the same cache to every round of a federated client so
    /// π_ref is computed once per pair. Default: a new cache for the base model, owned (and disposed) by this trainer.</param>
    /// <exception cref="InvalidOperationException">The model has no adapters.</exception>
    public DpoTrainer(LlamaForCausalLM model, TrainingOptions options, DpoOptions dpo, int padTokenId, ReferenceLogProbCache? reference = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(dpo);
        options.Validate();
        dpo.Validate();
        this.model = model;
        this.options = options;
        order = new ExampleOrder(options.Seed);
        this.dpo = dpo;
        collator = new PreferenceCollator(padTokenId);
        ownsReference = reference is null;
        Reference = reference ?? new ReferenceLogProbCache();
        var trainable = LoraInjector.Sites(model)
            .SelectMany(s => new[] { (s.ModulePath + ".lora_A.weight", s.Layer.LoraA), (s.ModulePath + ".lora_B.weight", s.Layer.LoraB) })
            .ToList();
        if (trainable.Count == 0) throw new InvalidOperationException("the model has no LoRA adapters to train; inject them first");
        Optimizer = new AdamW(trainable, options.AdamBeta1, options.AdamBeta2, options.AdamEpsilon, options.WeightDecay);
    }

    /// <summary>The local-training knobs.</summary>
    public TrainingOptions Options => options;

    /// <summary>The DPO knobs.</summary>
    public DpoOptions Dpo => dpo;

    /// <summary>The reference log-probabilities this trainer reads and fills.</summary>
    public ReferenceLogProbCache Reference { get; }

    /// <summary>An extra differentiable term added to the step's loss (FedProx's proximal term), or null.</summary>
    public Func<Tensor>? ExtraLoss { get; set; }

    /// <summary>Runs after every optimizer step with that step's learning rate (SCAFFOLD's drift correction), or null.</summary>
    public Action<double>? AfterOptimizerStep { get; set; }

    /// <summary>The optimizer, whose state can be checkpointed, restored or reset per round.</summary>
    public AdamW Optimizer { get; }

    /// <summary>Optimizer steps completed so far (also after a resume).</summary>
    public int Step { get; private set; }

    /// <summary>Metrics of each completed step.</summary>
    public IReadOnlyList<DpoMetrics> StepMetrics => stepMetrics;

    /// <summary>Pair-weighted metrics over every completed step (a round's summary), or null before the first step.</summary>
    public DpoMetrics? AggregatedMetrics => stepMetrics.Count == 0 ? null : DpoMetrics.Aggregate(stepMetrics);

    /// <summary>Puts the trainer where a checkpoint left it (the optimizer state is restored separately).</summary>
    public void RestoreProgress(int step, IEnumerable<DpoMetrics> metrics)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        Step = step;
        stepMetrics.Clear();
        stepMetrics.AddRange(metrics);
    }

    /// <summary>Trains until <see cref="TrainingOptions.MaxSteps"/>; <paramref name="onCheckpoint"/> is called every SaveEverySteps and at the end.</summary>
    public void Train(IReadOnlyList<PreferencePair> pairs, IProgress<DpoProgress>? progress = null,
        Action<DpoTrainer>? onCheckpoint = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        if (pairs.Count == 0) throw new ArgumentException("no preference pairs", nameof(pairs));
        var schedule = options.LearningRateSchedule();
        var clock = Stopwatch.StartNew();
        long tokens = 0;
        PrecomputeReferenceIfCovered(pairs);
        model.train();
        while (Step < options.MaxSteps)
        {
            cancellationToken.ThrowIfCancellationRequested();
            double lr = schedule.At(Step);
            var result = TrainStep(pairs, Step, lr, ExtraLoss);
            AfterOptimizerStep?.Invoke(lr);
            Step++;
            stepMetrics.Add(result.Metrics);
            tokens += result.Tokens;
            double seconds = clock.Elapsed.TotalSeconds;
            progress?.Report(new DpoProgress(Step, options.MaxSteps, result.Metrics, lr, result.GradNorm, tokens,
                seconds > 0 ? tokens / seconds : 0, clock.Elapsed));
            bool save = options.SaveEverySteps > 0 && Step % options.SaveEverySteps == 0;
            if (save || Step == options.MaxSteps) onCheckpoint?.Invoke(this);
        }
    }

    /// <summary>
    /// When the run will sample at least as many pairs as the list holds, computes every reference value up front in
    /// fixed batches of the list (TRL's precompute_ref_log_probs). A pair's value then does not depend on which other
    /// pairs a step batched it with (padding changes matmul shapes and so the last bits), so a run resumed from a
    /// checkpoint, which starts with an empty cache, continues bit for bit. Shorter runs over large lists compute lazily,
    /// per step, and a resume reproduces them only up to that rounding.
    /// </summary>
    void PrecomputeReferenceIfCovered(IReadOnlyList<PreferencePair> pairs)
    {
        long sampled = (long)options.MaxSteps * options.BatchSize * options.GradientAccumulationSteps;
        if (sampled < pairs.Count || Reference.Count >= pairs.Count) return;
        Reference.Get(model, pairs, Enumerable.Range(0, pairs.Count).ToList(), collator, options.BatchSize, options.LossChunkTokens);
    }

    /// <summary>One optimizer step over BatchSize × GradientAccumulationSteps pairs.</summary>
    /// <remarks>Runs in the model's current train/eval mode; <see cref="Train"/> sets train mode.</remarks>
    public DpoStepResult TrainStep(IReadOnlyList<PreferencePair> pairs, int step, double learningRate, Func<Tensor>? extraLoss = null)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        int micro = options.GradientAccumulationSteps;
        var microBatches = Enumerable.Range(0, micro)
            .Select(m => IndicesAt(pairs.Count, ((long)step * micro + m) * options.BatchSize, options.BatchSize))
            .ToList();
        // Reference values first: the pass runs in eval mode and must not sit between the dropout seed and the policy pass.
        Reference.Get(model, pairs, microBatches.SelectMany(b => b).ToList(), collator, options.BatchSize, options.LossChunkTokens);

        dropoutGenerator.manual_seed(options.Seed * 1_000_003 + step); // dropout masks depend on (seed, step) only
        LoraInjector.SetDropoutGenerator(model, dropoutGenerator);
        Optimizer.ZeroGrad();
        var parts = new List<DpoMetrics>(micro);
        long tokens = 0;
        foreach (var indices in microBatches)
        {
            using var scope = NewDisposeScope();
            var (referenceChosen, referenceRejected) = Reference.Get(model, pairs, indices, collator, options.BatchSize, options.LossChunkTokens);
            var (metrics, batchTokens) = MicroBatch(model, collator, indices.Select(i => pairs[i]).ToList(), referenceChosen, referenceRejected,
                dpo, lossScale: 1.0 / micro, options.LossChunkTokens);
            parts.Add(metrics);
            tokens += batchTokens;
        }
        if (extraLoss is not null)
        {
            // As in LocalTrainer: the weights do not move between micro-batches, so adding the term once per step gives
            // the gradient transformers' per-micro-batch addition (each divided by the accumulation count) gives.
            using var scope = NewDisposeScope();
            extraLoss().backward();
        }
        double gradNorm = Optimizer.ClipGradientNorm(options.MaxGradNorm);
        Optimizer.Step(learningRate);
        return new DpoStepResult(DpoMetrics.Aggregate(parts), gradNorm, tokens);
    }

    /// <summary>
    /// Forward and backward of one micro-batch: the DPO loss (mean over its pairs) × <paramref name="lossScale"/>, its
    /// gradients accumulated into the trainable parameters. Returns the micro-batch's metrics and its real tokens.
    /// </summary>
    public static (DpoMetrics Metrics, long Tokens) MicroBatch(LlamaForCausalLM model, PreferenceCollator collator,
        IReadOnlyList<PreferencePair> pairs, double[] referenceChosen, double[] referenceRejected, DpoOptions dpo, double lossScale, int chunkTokens)
    {
        ArgumentNullException.ThrowIfNull(collator);
        ArgumentNullException.ThrowIfNull(dpo);
        using var scope = NewDisposeScope();
        var batch = collator.Collate(pairs);
        int n = batch.Pairs;
        if (referenceChosen.Length != n || referenceRejected.Length != n)
            throw new ArgumentException($"{referenceChosen.Length}/{referenceRejected.Length} reference values for {n} pairs");
        var refChosen = tensor(referenceChosen);                                     // (n) float64
        var refRejected = tensor(referenceRejected);                                 // (n) float64
        var (logProbs, _) = SequenceLogProbs.ForwardBackward(model, tensor(batch.InputIds, batch.Shape), tensor(batch.Labels, batch.Shape),
            lp => DpoLoss.PerPair(lp.narrow(0, 0, n), lp.narrow(0, n, n), refChosen, refRejected, dpo.Beta, dpo.LabelSmoothing).mean() * lossScale,
            chunkTokens);
        var metrics = DpoLoss.Metrics(logProbs[..n], logProbs[n..], referenceChosen, referenceRejected, dpo.Beta, dpo.LabelSmoothing);
        return (metrics, batch.RealTokens);
    }

    /// <summary>Indices at positions [start, start+count) of the endless, per-epoch-shuffled stream over <paramref name="n"/> pairs.</summary>
    int[] IndicesAt(int n, long start, int count) => order.Indices(start, count, n);

    /// <summary>Frees the optimizer state, and the reference cache if this trainer created it.</summary>
    public void Dispose()
    {
        Optimizer.Dispose();
        dropoutGenerator.Dispose();
        if (ownsReference) Reference.Dispose();
    }
}
