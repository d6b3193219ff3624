namespace FedLlm.Training;

/// <summary>What a trainer does when a step's loss or gradient norm is NaN or infinite.</summary>
public enum NonFiniteAction
{
    /// <summary>Throw <see cref="NonFiniteTrainingException"/> before the optimizer step, so the adapter keeps its last finite values.</summary>
    Stop,

    /// <summary>Drop the step's gradients, take no optimizer step, and go on with the next step's data.</summary>
    Skip,
}

/// <summary>A training step produced a non-finite loss or gradient norm; the message names the step and the value.</summary>
public sealed class NonFiniteTrainingException(int step, string quantity, double value)
    : Exception($"step {step}: the {quantity} is {value} (not finite); training stopped before the optimizer step, so the adapter " +
        "and the last checkpoint hold the last finite values (lower the learning rate, or pass --on-nonfinite skip to skip such steps)")
{
    /// <summary>The 1-based step that diverged.</summary>
    public int Step { get; } = step;

    /// <summary>"loss" or "gradient norm".</summary>
    public string Quantity { get; } = quantity;

    /// <summary>The offending value (NaN or ±∞).</summary>
    public double Value { get; } = value;
}
