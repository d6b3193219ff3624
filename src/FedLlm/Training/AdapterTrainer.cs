using System.Diagnostics;
using FedLlm.Modeling;
using FedLlm.Peft;
using static TorchSharp.torch;

namespace FedLlm.Training;

/// <summary>
/// Trains a model's LoRA adapters on a local objective (<see cref="ITrainingObjective{TExample, TMetrics}"/>: instruction
/// tuning, DPO): AdamW, warm-up and decay, gradient accumulation and clipping, a repeatable data order, a guard against
/// non-finite steps, resumable checkpoints (<see cref="TrainingCheckpoint"/>) and the hooks federated algorithms use.
/// </summary>
/// <remarks>
/// <para>A step: the objective's pre-step work (DPO's reference pass); seed dropout from (seed, step); zero the
/// gradients; forward and backward of each micro-batch with its loss weight; add <see cref="ExtraLoss"/>; clip; check
/// that loss and gradient norm are finite; AdamW; then <see cref="AfterOptimizerStep"/>.</para>
/// <para>Every step is a pure function of (seed, step, adapter and optimizer state, and the objective's frozen state):
/// the examples of step s come from a per-epoch permutation seeded by (seed, epoch), and dropout's generator is reseeded
/// from (seed, step). So a run resumed from a checkpoint continues exactly as the uninterrupted run would have.</para>
/// </remarks>
public class AdapterTrainer<TExample, TMetrics> : IAdapterTrainer
{
    private readonly LlamaForCausalLM model;
    private readonly Generator dropoutGenerator;
    private readonly List<TMetrics> stepMetrics = new();
    private readonly List<int> skippedSteps = new();
    private readonly ExampleOrder order;

    /// <exception cref="InvalidOperationException">The model has no adapters.</exception>
    public AdapterTrainer(LlamaForCausalLM model, TrainingOptions options, ITrainingObjective<TExample, TMetrics> objective)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(objective);
        options.Validate();
        this.model = model;
        Options = options;
        Objective = objective;
        order = new ExampleOrder(options.Seed);
        // Dropout masks are drawn where the adapters live; a CPU generator cannot drive CUDA's rand.
        dropoutGenerator = new Generator(0, model.Device);
        var trainable = AdapterKeys.Parameters(model);
        if (trainable.Count == 0) throw new InvalidOperationException("the model has no LoRA adapters to train; inject them first");
        Optimizer = new AdamW(trainable, options.AdamBeta1, options.AdamBeta2, options.AdamEpsilon, options.WeightDecay);
    }

    /// <summary>The local-training knobs.</summary>
    public TrainingOptions Options { get; }

    /// <summary>What is minimised.</summary>
    public ITrainingObjective<TExample, TMetrics> Objective { get; }

    /// <summary>The optimizer, whose state can be checkpointed, restored, kept from round to round or reset.</summary>
    public AdamW Optimizer { get; }

    /// <summary>An extra differentiable term added to the step's loss (FedProx's proximal term), or null.</summary>
    public Func<Tensor>? ExtraLoss { get; set; }

    /// <summary>Runs after every optimizer step with that step's learning rate (SCAFFOLD's drift correction), or null.</summary>
    public Action<double>? AfterOptimizerStep { get; set; }

    /// <summary>Runs once per step when the step's gradients are complete, before clipping and the optimizer step
    /// (FLoRA's freezing of part of the adapter), or null.</summary>
    public Action? BeforeGradientClip { get; set; }

    /// <summary>Steps completed so far (also after a resume), skipped ones included.</summary>
    public int Step { get; private set; }

    /// <summary>The objective's metrics of each completed step.</summary>
    public IReadOnlyList<TMetrics> StepMetrics => stepMetrics;

    /// <summary>The loss of each completed step.</summary>
    public IReadOnlyList<double> StepLosses => stepMetrics.Select(Objective.Loss).ToList();

    /// <summary>1-based steps skipped as non-finite (<see cref="NonFiniteAction.Skip"/>) in this process.</summary>
    public IReadOnlyList<int> SkippedSteps => skippedSteps;

    /// <summary>Metrics over every completed step (a round's summary), or default before the first step.</summary>
    public TMetrics? AggregatedMetrics => stepMetrics.Count == 0 ? default : Objective.Aggregate(stepMetrics);

    /// <summary>Puts the trainer where a checkpoint left it (the optimizer state is restored separately).</summary>
    public void RestoreProgress(int step, IEnumerable<TMetrics> metrics)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentNullException.ThrowIfNull(metrics);
        Step = step;
        stepMetrics.Clear();
        stepMetrics.AddRange(metrics);
    }

    /// <summary>Trains until <see cref="TrainingOptions.MaxSteps"/>; <paramref name="onCheckpoint"/> is called every SaveEverySteps and at the end.</summary>
    /// <exception cref="NonFiniteTrainingException">A step's loss or gradient norm was not finite (with <see cref="NonFiniteAction.Stop"/>).</exception>
    public void Train(IReadOnlyList<TExample> examples, IProgress<TrainingProgress<TMetrics>>? progress = null,
        Action<AdapterTrainer<TExample, TMetrics>>? onCheckpoint = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(examples);
        if (examples.Count == 0) throw new ArgumentException("no training examples", nameof(examples));
        var schedule = Options.LearningRateSchedule();
        var clock = Stopwatch.StartNew();
        long tokens = 0;
        Objective.BeforeTraining(model, examples);
        model.train();
        while (Step < Options.MaxSteps)
        {
            cancellationToken.ThrowIfCancellationRequested();
            double lr = schedule.At(Step);
            var result = TrainStep(examples, Step, lr, ExtraLoss);
            if (!result.Skipped) AfterOptimizerStep?.Invoke(lr);
            Step++;
            if (result.Skipped) skippedSteps.Add(Step);
            stepMetrics.Add(result.Metrics);
            tokens += result.Tokens;
            double seconds = clock.Elapsed.TotalSeconds;
            progress?.Report(new TrainingProgress<TMetrics>(Step, Options.MaxSteps, result.Metrics, result.Loss, lr, result.GradNorm, tokens,
                seconds > 0 ? tokens / seconds : 0, clock.Elapsed, result.Skipped));
            bool save = Options.SaveEverySteps > 0 && Step % Options.SaveEverySteps == 0;
            if (save || Step == Options.MaxSteps) onCheckpoint?.Invoke(this);
        }
    }

    /// <summary>One optimizer step over BatchSize × GradientAccumulationSteps examples.</summary>
    /// <remarks>Runs in the model's current train/eval mode (<see cref="Train"/> sets train mode); does not call
    /// <see cref="AfterOptimizerStep"/>, which <see cref="Train"/> runs after each step.</remarks>
    /// <exception cref="NonFiniteTrainingException">The loss or gradient norm was not finite (with <see cref="NonFiniteAction.Stop"/>).</exception>
    public StepResult<TMetrics> TrainStep(IReadOnlyList<TExample> examples, int step, double learningRate, Func<Tensor>? extraLoss = null)
    {
        ArgumentNullException.ThrowIfNull(examples);
        int micro = Options.GradientAccumulationSteps;
        var microBatches = Enumerable.Range(0, micro)
            .Select(m => order.Indices(((long)step * micro + m) * Options.BatchSize, Options.BatchSize, examples.Count))
            .ToList();
        Objective.BeforeStep(model, examples, microBatches);

        dropoutGenerator.manual_seed(Options.Seed * 1_000_003 + step); // dropout masks depend on (seed, step) only
        LoraInjector.SetDropoutGenerator(model, dropoutGenerator);
        Optimizer.ZeroGrad();
        var weights = Objective.LossWeights(examples, microBatches);
        var parts = new List<TMetrics>(micro);
        long tokens = 0;
        for (int m = 0; m < micro; m++)
        {
            using var scope = NewDisposeScope();
            if (Objective.MicroBatch(model, examples, microBatches[m], weights[m]) is not { } part) continue;
            parts.Add(part.Metrics);
            tokens += part.Tokens;
        }
        if (extraLoss is not null)
        {
            // Transformers adds such a term to each micro-batch loss and divides each by the accumulation count, so its
            // gradient enters the step once in total; the weights do not move between micro-batches, so adding it once
            // here is the same gradient.
            using var scope = NewDisposeScope();
            extraLoss().backward();
        }
        BeforeGradientClip?.Invoke();
        double gradNorm = Optimizer.ClipGradientNorm(Options.MaxGradNorm);
        var metrics = Objective.Aggregate(parts);
        double loss = Objective.Loss(metrics);
        // Checked before the optimizer step: one NaN gradient turns every moment and weight it touches into NaN for good.
        string? bad = parts.Count > 0 && !double.IsFinite(loss) ? "loss" : !double.IsFinite(gradNorm) ? "gradient norm" : null;
        if (bad is not null)
        {
            if (Options.OnNonFinite == NonFiniteAction.Stop)
                throw new NonFiniteTrainingException(step + 1, bad, bad == "loss" ? loss : gradNorm);
            Optimizer.ZeroGrad();
            return new StepResult<TMetrics>(metrics, loss, gradNorm, tokens, Skipped: true);
        }
        Optimizer.Step(learningRate);
        return new StepResult<TMetrics>(metrics, loss, gradNorm, tokens);
    }

    /// <summary>Frees the optimizer state, the dropout generator and the objective.</summary>
    public void Dispose()
    {
        Optimizer.Dispose();
        dropoutGenerator.Dispose();
        Objective.Dispose();
        GC.SuppressFinalize(this);
    }
}
