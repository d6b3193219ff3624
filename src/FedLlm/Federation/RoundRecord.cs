using System.Text.Json.Serialization;

namespace FedLlm.Federation;

/// <summary>What one round did: one line of metrics.jsonl (written by <see cref="MetricsJsonl"/>, see docs/metrics.md).</summary>
public sealed record RoundRecord
{
    /// <summary>The round's 0-based index, as the strategies and the seeds see it; people and files see <see cref="Number"/>.</summary>
    public required int Round { get; init; }

    /// <summary>The round's number as every output shows it: 1 … R (metrics.jsonl, rounds/round-N, progress, charts, logs).</summary>
    [JsonIgnore]
    public int Number => NumberOf(Round);

    /// <summary>The number outputs show for the round with 0-based index <paramref name="round"/> (the wire protocol and
    /// the strategies carry the index).</summary>
    public static int NumberOf(int round) => round + 1;


    /// <summary>The clients' learning rate in this round (the cosine's value).</summary>
    public required double LearningRate { get; init; }

    /// <summary>Ids of the clients whose updates were aggregated.</summary>
    public required IReadOnlyList<string> Clients { get; init; }

    /// <summary>Each client's mean local training loss.</summary>
    public required IReadOnlyDictionary<string, double> ClientLoss { get; init; }

    /// <summary>‖y_i − x‖ of each client's update.</summary>
    public required IReadOnlyDictionary<string, double> UpdateNorms { get; init; }

    /// <summary>‖x_new − x_old‖ of the global step.</summary>
    public required double GlobalStepNorm { get; init; }

    /// <summary>Held-out loss of the new global adapter, on rounds where it was evaluated.</summary>
    public double? EvalLoss { get; init; }

    /// <summary>Held-out score of the new global adapter (SFT: exact match; DPO: reward accuracy), on rounds where it
    /// was evaluated.</summary>
    public double? EvalScore { get; init; }

    /// <summary>Further held-out metrics of the round's evaluation (DPO: reward margin, rewards of chosen and rejected).</summary>
    public IReadOnlyDictionary<string, double>? EvalMetrics { get; init; }
    /// <summary>Federated evaluation: the clients' scores of the new global adapter on their own data, combined by the
    /// strategy (<see cref="IFederatedStrategy.AggregateEvaluate"/>), on rounds where it ran.</summary>
    public IReadOnlyDictionary<string, double>? FederatedEvaluation { get; init; }

    /// <summary>Headline metrics of a benchmark task on the global model ("fpb/accuracy"…), on rounds where one was scored.</summary>
    public IReadOnlyDictionary<string, double>? TaskMetrics { get; init; }

    /// <summary>Bytes of adapter tensors sent to clients and received from them this round.</summary>
    public required long BytesSent { get; init; }

    /// <summary>Bytes of adapter tensors received from clients this round.</summary>
    public required long BytesReceived { get; init; }

    /// <summary>Wall-clock seconds the round took.</summary>
    public required double Seconds { get; init; }

    /// <summary>Resident memory of the server process after the round (a simulation: all clients too), to show it does not grow.</summary>
    public long? ResidentBytes { get; init; }

    /// <summary>The differential-privacy guarantee of everything released up to and including this round, or null when
    /// the run has no DP (a strategy decorator fills it in through <see cref="IFederatedStrategy.Annotate"/>).</summary>
    public RoundPrivacy? Privacy { get; init; }

    /// <summary>What secure aggregation did this round, or null when the run has none.</summary>
    public RoundSecureAggregation? SecureAggregation { get; init; }
    /// <summary>What the strategy measured while aggregating this round (the gap between averaging LoRA's factors and
    /// averaging their products, the bytes a rank-limited update really needs), or null when it measured nothing
    /// (filled in through <see cref="IFederatedStrategy.Annotate"/>).</summary>
    public IReadOnlyDictionary<string, double>? AggregationMetrics { get; init; }

    /// <summary>Simulated time when this round (or asynchronous version) ended, in units of one local step of a client
    /// with speed factor 1 (YAML <c>async:</c> client speeds); null when the run simulates no speeds.</summary>
    public double? VirtualTime { get; init; }

    /// <summary>What buffered asynchronous aggregation (FedBuff) put into this version, or null for a synchronous round.</summary>
    public RoundAsync? Async { get; init; }

    /// <summary>What the robust aggregation rule did this round (who it left out or down-weighted), or null when the run
    /// has none (filled in through <see cref="IFederatedStrategy.Annotate"/>).</summary>
    public RoundRobust? Robust { get; init; }
}

/// <summary>One round of robust aggregation.</summary>
/// <param name="Rule">The rule's name (krum, multi-krum, median, trimmed-mean, median-norm-clipping, fltrust, flame).</param>
/// <param name="ClientWeights">Each client's share of the round's aggregate (summing to 1; 0 = left out: Krum's rejected
/// updates, FLTrust's untrusted ones), or null for coordinate-wise rules (median, trimmed mean), where no client has one
/// weight.</param>
/// <param name="ScoreName">What <paramref name="ClientScores"/> measure: krum_score (sum of squared distances to the
/// nearest neighbours, lower is more central), trust (FLTrust's ReLU(cos(Δ_i, Δ₀))), clip_scale (the factor
/// min(1, τ/‖Δ_i‖) norm clipping applied); null with no scores.</param>
/// <param name="ClientScores">The rule's per-client measure, or null.</param>
public sealed record RoundRobust(string Rule, IReadOnlyDictionary<string, double>? ClientWeights, string? ScoreName,
    IReadOnlyDictionary<string, double>? ClientScores)
{
    /// <summary>Clients whose share of the aggregate is 0, in ordinal order.</summary>
    public IReadOnlyList<string> LeftOut() =>
        ClientWeights is null ? [] : ClientWeights.Where(kv => kv.Value == 0).Select(kv => kv.Key).Order(StringComparer.Ordinal).ToList();
}

/// <summary>One version of buffered asynchronous aggregation: the buffer's size, the server learning rate, the staleness
/// function and every buffered update.</summary>
public sealed record RoundAsync(int BufferSize, double ServerLearningRate, string Staleness, IReadOnlyList<BufferedUpdate> Updates);

/// <summary>One update of an asynchronous version: which client, the global version it started from (0 = the initial
/// adapter), its staleness τ (versions committed between its start and its arrival) and weight s(τ), its start and finish
/// (simulation: virtual time; network: seconds since the server process started), its training loss and ‖Δ‖.</summary>
public sealed record BufferedUpdate(string Client, int BaseVersion, int Staleness, double Weight, double StartedAt, double FinishedAt,
    double TrainLoss, double DeltaNorm)
{
    /// <summary>Each client's mean training loss over its updates in one version (a fast client may have two).</summary>
    public static IReadOnlyDictionary<string, double> MeanLossPerClient(IEnumerable<BufferedUpdate> updates) =>
        updates.GroupBy(u => u.Client).ToDictionary(g => g.Key, g => g.Average(u => u.TrainLoss));

    /// <summary>Each client's mean ‖Δ‖ over its updates in one version.</summary>
    public static IReadOnlyDictionary<string, double> MeanNormPerClient(IEnumerable<BufferedUpdate> updates) =>
        updates.GroupBy(u => u.Client).ToDictionary(g => g.Key, g => g.Average(u => u.DeltaNorm));
}

/// <summary>(ε, δ)-DP spent so far, with the mechanism's parameters the accountant used.</summary>
/// <param name="Epsilon">ε after this round (RDP accountant, composed over the rounds so far); null = unbounded (σ = 0:
/// clipping without noise), which JSON cannot write as a number.</param>
/// <param name="Delta">δ.</param>
/// <param name="NoiseMultiplier">σ of one round.</param>
/// <param name="SamplingRate">q of one round (clients per round / clients; 1 for local DP).</param>
public sealed record RoundPrivacy(double? Epsilon, double Delta, double NoiseMultiplier, double SamplingRate);

/// <summary>One round of secure aggregation: how many clients the released sum holds and how many dropped, the settings,
/// and the protocol's own cost (its messages' bytes, and the seconds of encoding, the four phases and decoding).</summary>
public sealed record RoundSecureAggregation(int Survivors, int Dropped, int Threshold, int? Neighbours, int QuantisationBits,
    double QuantisationRange, long ProtocolBytes, double ProtocolSeconds);
