using System.Text.Json.Serialization;

namespace FedLlm.Federation;

/// <summary>What one round did: one line of metrics.jsonl (written by <see cref="MetricsJsonl"/>, see docs/metrics.md).</summary>
public sealed record RoundRecord
{
    /// <summary>The round's 0-based index, as the strategies and the seeds see it; people and files see <see cref="Number"/>.</summary>
    public required int Round { get; init; }

    /// <summary>The round's number as every output shows it: 1 … R (metrics.jsonl, rounds/round-N, progress, charts, logs).</summary>
    [JsonIgnore]
    public int Number => Round + 1;


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
}
