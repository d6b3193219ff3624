namespace FedLlm.Federation;

/// <summary>
/// The part of <see cref="FederationOptions"/> that shapes a client's local training, which is all a client needs (in
/// simulation, and as the server's join reply tells a network client). Derived from the run's options in one place
/// (<see cref="FederationOptions.ClientTraining"/>), so the two cannot drift apart.
/// </summary>
public sealed record ClientTrainingOptions
{
    /// <summary>K, optimizer steps per round (OpenFedLLM: max_steps 10).</summary>
    public int LocalSteps { get; init; } = 10;

    /// <summary>Examples per micro-batch (OpenFedLLM: 16).</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Micro-batches per optimizer step.</summary>
    public int GradientAccumulationSteps { get; init; } = 1;

    /// <summary>Gradient clipping norm (OpenFedLLM: 1.0).</summary>
    public double MaxGradNorm { get; init; } = 1.0;

    /// <summary>Tokens per example after truncation (OpenFedLLM: seq_length 512).</summary>
    public int MaxSequenceLength { get; init; } = 512;

    /// <summary>Keep the client's AdamW moments from round to round instead of starting fresh (OpenFedLLM starts fresh).</summary>
    public bool KeepClientOptimizerState { get; init; }

    /// <summary>The run's seed: each client's data sample and dropout in a round follow from it.</summary>
    public long Seed { get; init; } = 2023;

    /// <summary>Throws, naming the field, when a count is not positive or the clipping norm is not finite and positive.</summary>
    public void Validate()
    {
        static void Positive(double value, string name)
        {
            if (!(value > 0) || double.IsInfinity(value)) throw new ArgumentOutOfRangeException(name, value, $"{name} must be finite and positive");
        }
        Positive(LocalSteps, nameof(LocalSteps));
        Positive(BatchSize, nameof(BatchSize));
        Positive(GradientAccumulationSteps, nameof(GradientAccumulationSteps));
        Positive(MaxGradNorm, nameof(MaxGradNorm));
        Positive(MaxSequenceLength, nameof(MaxSequenceLength));
    }
}
