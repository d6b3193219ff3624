using FedLlm.Runtime;
using System.Diagnostics;
using FedLlm.Data;
using FedLlm.Modeling;
using FedLlm.Peft;
using static TorchSharp.torch;

namespace FedLlm.Training;

/// <summary>Reported after every optimizer step.</summary>
public sealed record TrainingProgress(
    int Step, int TotalSteps, double Loss, double LearningRate, double GradNorm, long Tokens, double TokensPerSecond, TimeSpan Elapsed)
{
    public TimeSpan EstimatedRemaining => Step == 0 ? TimeSpan.Zero : Elapsed / Step * (TotalSteps - Step);
}

/// <summary>
/// Supervised fine-tuning of a model's LoRA adapters on tokenized instruction examples: AdamW, warm-up and decay,
/// gradient accumulation and clipping, a repeatable data order, and resumable checkpoints.
/// </summary>
/// <remarks>
/// Every step is a pure function of (seed, step, adapter and optimizer state): the examples of step s come from a
/// per-epoch permutation seeded by (seed, epoch), and dropout's generator is reseeded from (seed, step). So a run resumed
/// from a checkpoint continues exactly as the uninterrupted run would have.
/// </remarks>
public sealed class LocalTrainer : IAdapterTrainer
{
    private readonly LlamaForCausalLM model;
    private readonly TorchSharp.torch.Generator dropoutGenerator = new(0);
    private readonly TrainingOptions options;
    private readonly SftCollator collator;
    private readonly List<double> stepLosses = new();
    private readonly ExampleOrder order;

    public LocalTrainer(LlamaForCausalLM model, TrainingOptions options, int padTokenId)
    {
        options.Validate();
        this.model = model;
        this.options = options;
        collator = new SftCollator(padTokenId);
        order = new ExampleOrder(options.Seed);
        var trainable = LoraInjector.Sites(model)
            .SelectMany(s => new[] { (s.ModulePath + ".lora_A.weight", s.Layer.LoraA), (s.ModulePath + ".lora_B.weight", s.Layer.LoraB) })
            .ToList();
        if (trainable.Count == 0) throw new InvalidOperationException("the model has no LoRA adapters to train; inject them first");
        Optimizer = new AdamW(trainable, options.AdamBeta1, options.AdamBeta2, options.AdamEpsilon, options.WeightDecay);
    }

    public TrainingOptions Options => options;

    /// <summary>An extra differentiable term added to every micro-batch loss (FedProx's proximal term), or null.</summary>
    public Func<Tensor>? ExtraLoss { get; set; }

    /// <summary>Runs after every optimizer step with that step's learning rate (SCAFFOLD's drift correction), or null.</summary>
    public Action<double>? AfterOptimizerStep { get; set; }
    public AdamW Optimizer { get; }

    /// <summary>Optimizer steps completed so far (also after a resume).</summary>
    public int Step { get; private set; }

    /// <summary>Mean training loss of each completed step.</summary>
    public IReadOnlyList<double> StepLosses => stepLosses;

    /// <summary>Puts the trainer where a checkpoint left it (the optimizer state is restored separately).</summary>
    public void RestoreProgress(int step, IEnumerable<double> losses)
    {
        Step = step;
        stepLosses.Clear();
        stepLosses.AddRange(losses);
    }

    /// <summary>Trains until <see cref="TrainingOptions.MaxSteps"/>; <paramref name="onCheckpoint"/> is called every SaveEverySteps and at the end.</summary>
    public void Train(IReadOnlyList<SftExample> examples, IProgress<TrainingProgress>? progress = null,
        Action<LocalTrainer>? onCheckpoint = null, CancellationToken cancellationToken = default)
    {
        if (examples.Count == 0) throw new ArgumentException("no training examples", nameof(examples));
        var schedule = options.LearningRateSchedule();
        var clock = Stopwatch.StartNew();
        long tokens = 0;
        model.train();
        while (Step < options.MaxSteps)
        {
            cancellationToken.ThrowIfCancellationRequested();
            double lr = schedule.At(Step);
            var (loss, gradNorm, stepTokens) = TrainStep(examples, Step, lr, ExtraLoss);
            AfterOptimizerStep?.Invoke(lr);
            Step++;
            stepLosses.Add(loss);
            tokens += stepTokens;
            double seconds = clock.Elapsed.TotalSeconds;
            progress?.Report(new TrainingProgress(Step, options.MaxSteps, loss, lr, gradNorm, tokens,
                seconds > 0 ? tokens / seconds : 0, clock.Elapsed));
            bool save = options.SaveEverySteps > 0 && Step % options.SaveEverySteps == 0;
            if (save || Step == options.MaxSteps) onCheckpoint?.Invoke(this);
        }
    }

    /// <summary>One optimizer step over BatchSize × GradientAccumulationSteps examples; returns mean loss, pre-clip grad norm and tokens.</summary>
    public (double Loss, double GradNorm, long Tokens) TrainStep(IReadOnlyList<SftExample> examples, int step, double learningRate,
        Func<Tensor>? extraLoss = null)
    {
        dropoutGenerator.manual_seed(options.Seed * 1_000_003 + step); // dropout masks depend on (seed, step) only
        LoraInjector.SetDropoutGenerator(model, dropoutGenerator);
        Optimizer.ZeroGrad();
        double weightedLoss = 0;
        long labelled = 0, tokens = 0;
        int micro = options.GradientAccumulationSteps;
        var microBatches = Enumerable.Range(0, micro)
            .Select(m => ExamplesAt(examples, ((long)step * micro + m) * options.BatchSize, options.BatchSize))
            .ToList();
        long totalLabelled = microBatches.Sum(b => (long)b.Sum(e => e.Labels.Count(l => l != -100)));
        foreach (var batchExamples in microBatches)
        {
            using var scope = NewDisposeScope();
            var batch = collator.Collate(batchExamples);
            var ids = tensor(batch.InputIds, batch.Shape);
            var labels = tensor(batch.Labels, batch.Shape);
            long batchLabelled = batch.LossTokenCount;
            if (batchLabelled == 0) continue;
            // Weight each micro-batch by its share of labelled tokens, so the step's gradient is that of the mean
            // over all labelled tokens of the step, whatever the padding of each micro-batch.
            double share = (double)batchLabelled / Math.Max(1, totalLabelled);
            var (loss, n) = CausalLmStep.ForwardBackward(model, ids, labels, attentionMask: null, share, options.LossChunkTokens);
            weightedLoss += loss * n;
            labelled += n;
            tokens += batch.AttentionMask.Sum();
        }
        if (extraLoss is not null)
        {
            // Transformers adds such a term to each micro-batch loss and divides each by the accumulation count, so its
            // gradient enters the step once in total; the weights do not move between micro-batches, so adding it once
            // here is the same gradient.
            using var scope = NewDisposeScope();
            extraLoss().backward();
        }
        double gradNorm = Optimizer.ClipGradientNorm(options.MaxGradNorm);
        Optimizer.Step(learningRate);
        return (labelled > 0 ? weightedLoss / labelled : double.NaN, gradNorm, tokens);
    }

    /// <summary>The examples at positions [start, start+count) of the endless, per-epoch-shuffled example stream.</summary>
    IReadOnlyList<SftExample> ExamplesAt(IReadOnlyList<SftExample> examples, long start, int count) =>
        order.Indices(start, count, examples.Count).Select(i => examples[i]).ToList();

    public void Dispose()
    {
        Optimizer.Dispose();
        dropoutGenerator.Dispose();
    }
}
