namespace FedLlm.Training;

/// <summary>
/// Local fine-tuning settings. Defaults follow OpenFedLLM's training scripts (batch 16, learning rate 5e-5, constant
/// schedule, sequence length 512, seed 2023) and transformers' Trainer (AdamW β 0.9/0.999, ε 1e-8, clip at 1.0).
/// </summary>
public sealed record TrainingOptions
{
    /// <summary>Optimizer steps to take (100).</summary>
    public int MaxSteps { get; init; } = 100;

    /// <summary>Examples per micro-batch (16); an optimizer step sees <see cref="BatchSize"/> ×
    /// <see cref="GradientAccumulationSteps"/>.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Micro-batches whose gradients are summed into one optimizer step (1 = no accumulation).</summary>
    public int GradientAccumulationSteps { get; init; } = 1;

    /// <summary>The peak learning rate, reached after the warm-up (5e-5).</summary>
    public double LearningRate { get; init; } = 5e-5;

    /// <summary>The schedule's shape after warm-up (constant by default).</summary>
    public LearningRateScheduleKind Schedule { get; init; } = LearningRateScheduleKind.Constant;

    /// <summary>Steps of linear warm-up from 0 to <see cref="LearningRate"/> (0 = none).</summary>
    public int WarmupSteps { get; init; }

    /// <summary>Where cosine and linear decay end (0).</summary>
    public double MinLearningRate { get; init; }

    /// <summary>Clip the gradients' global L2 norm to this before each step; 0 = no clipping (1.0).</summary>
    public double MaxGradNorm { get; init; } = 1.0;

    /// <summary>AdamW's decoupled weight decay (0 = none).</summary>
    public double WeightDecay { get; init; }

    /// <summary>AdamW's β1 (0.9).</summary>
    public double AdamBeta1 { get; init; } = 0.9;

    /// <summary>AdamW's β2 (0.999).</summary>
    public double AdamBeta2 { get; init; } = 0.999;

    /// <summary>AdamW's ε (1e-8).</summary>
    public double AdamEpsilon { get; init; } = 1e-8;

    /// <summary>Tokens per example; longer ones are truncated (512).</summary>
    public int MaxSequenceLength { get; init; } = 512;

    /// <summary>Seed of batch sampling and dropout (2023).</summary>
    public long Seed { get; init; } = 2023;

    /// <summary>Write a resumable checkpoint every this many optimizer steps; 0 = only at the end.</summary>
    public int SaveEverySteps { get; init; }

    /// <summary>Rows of the output projection computed at once in the loss; bounds the logits held in memory. 0 (the
    /// default): as many rows as keep one chunk's float32 logits within 32 MiB (<see cref="LossChunk"/>).</summary>
    public int LossChunkTokens { get; init; }

    /// <summary>What to do when a step's loss or gradient norm is not finite: stop (default) or skip the step.</summary>
    public NonFiniteAction OnNonFinite { get; init; } = NonFiniteAction.Stop;

    /// <summary>The per-step schedule these options describe, over <see cref="MaxSteps"/> steps.</summary>
    public LearningRateSchedule LearningRateSchedule() =>
        new(Schedule, LearningRate, MaxSteps, WarmupSteps, MinLearningRate);

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is not finite or out of range (names the
    /// option).</exception>
    public void Validate()
    {
        static void Positive(double value, string name)
        {
            if (!(value > 0)) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive");
        }
        // NaN fails every comparison below, and an infinite learning rate or clip norm passes them; both would turn the
        // adapter into NaN at the first step, so every float option must be finite first.
        static void Finite(double value, string name)
        {
            if (!double.IsFinite(value)) throw new ArgumentOutOfRangeException(name, value, $"{name} must be a finite number, not {value}");
        }
        Finite(LearningRate, nameof(LearningRate));
        Finite(MinLearningRate, nameof(MinLearningRate));
        Finite(MaxGradNorm, nameof(MaxGradNorm));
        Finite(WeightDecay, nameof(WeightDecay));
        Finite(AdamBeta1, nameof(AdamBeta1));
        Finite(AdamBeta2, nameof(AdamBeta2));
        Finite(AdamEpsilon, nameof(AdamEpsilon));
        Positive(MaxSteps, nameof(MaxSteps));
        Positive(BatchSize, nameof(BatchSize));
        Positive(GradientAccumulationSteps, nameof(GradientAccumulationSteps));
        Positive(LearningRate, nameof(LearningRate));
        Positive(MaxSequenceLength, nameof(MaxSequenceLength));
        if (LossChunkTokens < 0) throw new ArgumentOutOfRangeException(nameof(LossChunkTokens), LossChunkTokens, "must be ≥ 0 (0 = automatic)");
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps, "must be ≥ 0");
        if (MaxGradNorm < 0) throw new ArgumentOutOfRangeException(nameof(MaxGradNorm), MaxGradNorm, "must be ≥ 0 (0 = no clipping)");
        if (!Enum.IsDefined(OnNonFinite)) throw new ArgumentOutOfRangeException(nameof(OnNonFinite), OnNonFinite, "must be Stop or Skip");
        if (SaveEverySteps < 0) throw new ArgumentOutOfRangeException(nameof(SaveEverySteps), SaveEverySteps, "must be ≥ 0");
    }
}
