namespace FedLlm.Training;

/// <summary>The shape of a learning-rate schedule after warm-up.</summary>
public enum LearningRateScheduleKind
{
    /// <summary>The peak learning rate throughout.</summary>
    Constant,

    /// <summary>Half a cosine from the peak down to the minimum over the steps after warm-up.</summary>
    Cosine,

    /// <summary>A straight line from the peak down to the minimum over the steps after warm-up.</summary>
    Linear,
}

/// <summary>
/// Learning rate per optimizer step as transformers' schedulers compute it: linear warm-up from 0 over
/// <paramref name="WarmupSteps"/>, then constant, cosine decay to <paramref name="MinLearningRate"/>, or linear decay.
/// </summary>
public sealed record LearningRateSchedule(LearningRateScheduleKind Kind, double PeakLearningRate, int TotalSteps, int WarmupSteps = 0, double MinLearningRate = 0)
{
    /// <param name="step">0-based index of the optimizer step about to be taken.</param>
    public double At(int step)
    {
        if (WarmupSteps > 0 && step < WarmupSteps) return PeakLearningRate * step / WarmupSteps;
        if (Kind == LearningRateScheduleKind.Constant) return PeakLearningRate;
        double progress = Math.Clamp((double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps), 0, 1);
        double fraction = Kind == LearningRateScheduleKind.Cosine ? 0.5 * (1 + Math.Cos(Math.PI * progress)) : 1 - progress;
        return MinLearningRate + (PeakLearningRate - MinLearningRate) * fraction;
    }
}
