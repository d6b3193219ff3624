namespace FedLlm.Training;

/// <summary>Reported after every step of an <see cref="AdapterTrainer{TExample, TMetrics}"/>.</summary>
/// <param name="Metrics">The objective's metrics of the step (SFT: loss and labelled tokens; DPO: rewards, margin, accuracy).</param>
/// <param name="Skipped">The step was not finite and was skipped (<see cref="NonFiniteAction.Skip"/>).</param>
public sealed record TrainingProgress<TMetrics>(int Step, int TotalSteps, TMetrics Metrics, double Loss, double LearningRate,
    double GradNorm, long Tokens, double TokensPerSecond, TimeSpan Elapsed, bool Skipped = false)
{
    public TimeSpan EstimatedRemaining => Step == 0 ? TimeSpan.Zero : Elapsed / Step * (TotalSteps - Step);
}

/// <summary>One optimizer step's outcome.</summary>
/// <param name="Metrics">The objective's metrics over all the step's examples.</param>
/// <param name="GradNorm">The gradient norm before clipping.</param>
/// <param name="Tokens">Real (non-padding) tokens the step saw.</param>
/// <param name="Skipped">The loss or gradient norm was not finite and no optimizer step was taken.</param>
public sealed record StepResult<TMetrics>(TMetrics Metrics, double Loss, double GradNorm, long Tokens, bool Skipped = false);
