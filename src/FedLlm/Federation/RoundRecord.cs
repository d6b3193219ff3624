namespace FedLlm.Federation;

/// <summary>What one round did: one line of metrics.jsonl.</summary>
public sealed record RoundRecord
{
    public required int Round { get; init; }
    public required double LearningRate { get; init; }
    public required IReadOnlyList<string> Clients { get; init; }
    public required IReadOnlyDictionary<string, double> ClientLoss { get; init; }

    /// <summary>‖y_i − x‖ of each client's update.</summary>
    public required IReadOnlyDictionary<string, double> UpdateNorms { get; init; }

    /// <summary>‖x_new − x_old‖ of the global step.</summary>
    public required double GlobalStepNorm { get; init; }

    public double? EvalLoss { get; init; }
    public double? EvalScore { get; init; }

    /// <summary>Further held-out metrics of the round's evaluation (DPO: reward margin, rewards of chosen and rejected).</summary>
    public IReadOnlyDictionary<string, double>? EvalMetrics { get; init; }
    /// <summary>Headline metrics of a benchmark task on the global model ("fpb/accuracy"…), on rounds where one was scored.</summary>
    public IReadOnlyDictionary<string, double>? TaskMetrics { get; init; }

    /// <summary>Bytes of adapter tensors sent to clients and received from them this round.</summary>
    public required long BytesSent { get; init; }
    public required long BytesReceived { get; init; }
    public required double Seconds { get; init; }

    /// <summary>Resident memory of the server process after the round (a simulation: all clients too), to show it does not grow.</summary>
    public long? ResidentBytes { get; init; }

    /// <summary>The differential-privacy guarantee of everything released up to and including this round, or null when
    /// the run has no DP (a strategy decorator fills it in through <see cref="IFederatedStrategy.Annotate"/>).</summary>
    public RoundPrivacy? Privacy { get; init; }

    /// <summary>What the strategy measured while aggregating this round (the gap between averaging LoRA's factors and
    /// averaging their products, the bytes a rank-limited update really needs), or null when it measured nothing
    /// (filled in through <see cref="IFederatedStrategy.Annotate"/>).</summary>
    public IReadOnlyDictionary<string, double>? AggregationMetrics { get; init; }
}

/// <summary>(ε, δ)-DP spent so far, with the mechanism's parameters the accountant used.</summary>
/// <param name="Epsilon">ε after this round (RDP accountant, composed over the rounds so far); null = unbounded (σ = 0:
/// clipping without noise), which JSON cannot write as a number.</param>
/// <param name="Delta">δ.</param>
/// <param name="NoiseMultiplier">σ of one round.</param>
/// <param name="SamplingRate">q of one round (clients per round / clients; 1 for local DP).</param>
public sealed record RoundPrivacy(double? Epsilon, double Delta, double NoiseMultiplier, double SamplingRate);
