namespace FedLlm.Training;

/// <summary>
/// Local fine-tuning settings. Defaults follow OpenFedLLM's training scripts (batch 16, learning rate 5e-5, constant
/// schedule, sequence length 512, seed 2023) and transformers' Trainer (AdamW β 0.9/0.999, ε 1e-8, clip at 1.0).
/// </summary>
public sealed record TrainingOptions
{
    public int MaxSteps { get; init; } = 100;
    public int BatchSize { get; init; } = 16;
    public int GradientAccumulationSteps { get; init; } = 1;
    public double LearningRate { get; init; } = 5e-5;
    public LearningRateScheduleKind Schedule { get; init; } = LearningRateScheduleKind.Constant;
    public int WarmupSteps { get; init; }
    public double MinLearningRate { get; init; }
    public double MaxGradNorm { get; init; } = 1.0;
    public double WeightDecay { get; init; }
    public double AdamBeta1 { get; init; } = 0.9;
    public double AdamBeta2 { get; init; } = 0.999;
    public double AdamEpsilon { get; init; } = 1e-8;
    public int MaxSequenceLength { get; init; } = 512;
    public long Seed { get; init; } = 2023;

    /// <summary>Write a resumable checkpoint every this many optimizer steps; 0 = only at the end.</summary>
    public int SaveEverySteps { get; init; }

    /// <summary>Rows of the output projection computed at once in the loss; bounds the logits held in memory.</summary>
    public int LossChunkTokens { get; init; } = 1024;

    /// <summary>What to do when a step's loss or gradient norm is not finite: stop (default) or skip the step.</summary>
    public NonFiniteAction OnNonFinite { get; init; } = NonFiniteAction.Stop;

    public LearningRateSchedule LearningRateSchedule() =>
        new(Schedule, LearningRate, MaxSteps, WarmupSteps, MinLearningRate);

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
        Positive(LossChunkTokens, nameof(LossChunkTokens));
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps, "must be ≥ 0");
        if (MaxGradNorm < 0) throw new ArgumentOutOfRangeException(nameof(MaxGradNorm), MaxGradNorm, "must be ≥ 0 (0 = no clipping)");
        if (!Enum.IsDefined(OnNonFinite)) throw new ArgumentOutOfRangeException(nameof(OnNonFinite), OnNonFinite, "must be Stop or Skip");
        if (SaveEverySteps < 0) throw new ArgumentOutOfRangeException(nameof(SaveEverySteps), SaveEverySteps, "must be ≥ 0");
    }
}
