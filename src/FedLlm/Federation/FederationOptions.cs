namespace FedLlm.Federation;

/// <summary>
/// How a federated run proceeds. Defaults are OpenFedLLM's training script (run_sft.sh): 20 clients, 2 sampled per
/// round, 200 rounds, 10 local steps of batch 16, learning rate 5e-5 decayed by a cosine over rounds to 1e-6,
/// a fresh local optimizer each round, seed 2023.
/// </summary>
public sealed record FederationOptions
{
    /// <summary>Federated rounds R; the cosine learning-rate schedule spans them.</summary>
    public int Rounds { get; init; } = 200;

    /// <summary>All clients N, sampled or not (the data is split over them).</summary>
    public int TotalClients { get; init; } = 20;

    /// <summary>Clients sampled per round (OpenFedLLM: sample_clients).</summary>
    public int ClientsPerRound { get; init; } = 2;

    /// <summary>Optimizer steps each sampled client takes per round.</summary>
    public int LocalSteps { get; init; } = 10;

    /// <summary>Examples per micro-batch of local training.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Micro-batches summed into one local optimizer step.</summary>
    public int GradientAccumulationSteps { get; init; } = 1;

    /// <summary>The clients' learning rate in the first round; a cosine over rounds takes it to
    /// <see cref="MinLearningRate"/>.</summary>
    public double LearningRate { get; init; } = 5e-5;

    /// <summary>The cosine over rounds ends here (OpenFedLLM: 1e-6 for SFT, 1e-5 for DPO).</summary>
    public double MinLearningRate { get; init; } = 1e-6;

    /// <summary>Gradient L2 norm clipping of each local step; 0 = none.</summary>
    public double MaxGradNorm { get; init; } = 1.0;

    /// <summary>Tokens per example; longer ones are truncated.</summary>
    public int MaxSequenceLength { get; init; } = 512;

    /// <summary>Keep each client's AdamW moments from round to round instead of starting fresh (OpenFedLLM starts fresh).</summary>
    public bool KeepClientOptimizerState { get; init; }

    /// <summary>The run seed: client sampling, data order, LoRA initialisation and dropout derive from it.</summary>
    public long Seed { get; init; } = 2023;

    /// <summary>Evaluate the global adapter every this many rounds (and after the last); 0 = never.</summary>
    public int EvaluateEvery { get; init; } = 1;

    /// <summary>End the run after this many rounds although the learning-rate schedule spans <see cref="Rounds"/> (a
    /// privacy budget that runs out first); null = run every round.</summary>
    public int? StopAfterRounds { get; init; }

    /// <summary>The rounds the run actually runs: <see cref="Rounds"/>, or fewer with <see cref="StopAfterRounds"/>.</summary>
    public int RoundsToRun => StopAfterRounds is { } stop ? Math.Min(stop, Rounds) : Rounds;

    /// <summary>What a client's local training needs of these options.</summary>
    public ClientTrainingOptions ClientTraining => new()
    {
        LocalSteps = LocalSteps, BatchSize = BatchSize, GradientAccumulationSteps = GradientAccumulationSteps, MaxGradNorm = MaxGradNorm,
        MaxSequenceLength = MaxSequenceLength, KeepClientOptimizerState = KeepClientOptimizerState, Seed = Seed,
    };

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range (names the option).</exception>
    public void Validate()
    {
        static void Positive(double value, string name)
        {
            if (!(value > 0)) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive");
        }
        Positive(Rounds, nameof(Rounds));
        Positive(TotalClients, nameof(TotalClients));
        Positive(ClientsPerRound, nameof(ClientsPerRound));
        Positive(LocalSteps, nameof(LocalSteps));
        Positive(BatchSize, nameof(BatchSize));
        Positive(GradientAccumulationSteps, nameof(GradientAccumulationSteps));
        Positive(LearningRate, nameof(LearningRate));
        Positive(MaxSequenceLength, nameof(MaxSequenceLength));
        if (MinLearningRate < 0 || MinLearningRate > LearningRate)
            throw new ArgumentOutOfRangeException(nameof(MinLearningRate), MinLearningRate, "must be in [0, LearningRate]");
        if (StopAfterRounds is <= 0) throw new ArgumentOutOfRangeException(nameof(StopAfterRounds), StopAfterRounds, "must be positive when set");
        if (EvaluateEvery < 0) throw new ArgumentOutOfRangeException(nameof(EvaluateEvery), EvaluateEvery, "must be ≥ 0");
    }
}
