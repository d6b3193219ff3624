namespace FedLlm.Training;

/// <summary>Reported after every step of an <see cref="AdapterTrainer{TExample, TMetrics}"/>.</summary>
/// <param name="Metrics">The objective's metrics of the step (SFT: loss and labelled tokens; DPO: rewards, margin, accuracy).</param>
/// <param name="Skipped">The step was not finite and was skipped (<see cref="NonFiniteAction.Skip"/>).</param>
/// <param name="Step">Steps completed (1-based).</param>
/// <param name="TotalSteps">Steps the run will take.</param>
/// <param name="Loss">The step's loss (the objective's scalar).</param>
/// <param name="LearningRate">The learning rate the step was taken with.</param>
/// <param name="GradNorm">The gradient norm before clipping.</param>
/// <param name="Tokens">Real (non-padding) tokens seen so far.</param>
/// <param name="TokensPerSecond">Throughput since training started.</param>
/// <param name="Elapsed">Wall-clock time since training started.</param>
public sealed record TrainingProgress<TMetrics>(int Step, int TotalSteps, TMetrics Metrics, double Loss, double LearningRate,
    double GradNorm, long Tokens, double TokensPerSecond, TimeSpan Elapsed, bool Skipped = false)
{
    /// <summary>Remaining time at the run's pace so far (zero before the first step).</summary>
    public TimeSpan EstimatedRemaining => Step == 0 ? TimeSpan.Zero : Elapsed / Step * (TotalSteps - Step);
}

/// <summary>One optimizer step's outcome.</summary>
/// <param name="Metrics">The objective's metrics over all the step's examples.</param>
/// <param name="GradNorm">The gradient norm before clipping.</param>
/// <param name="Tokens">Real (non-padding) tokens the step saw.</param>
/// <param name="Skipped">The loss or gradient norm was not finite and no optimizer step was taken.</param>
/// <param name="Loss">The step's loss (the objective's scalar, from <paramref name="Metrics"/>).</param>
public sealed record StepResult<TMetrics>(TMetrics Metrics, double Loss, double GradNorm, long Tokens, bool Skipped = false);
