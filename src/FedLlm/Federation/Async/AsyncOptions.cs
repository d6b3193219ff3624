namespace FedLlm.Federation.Async;

/// <summary>Which staleness function weighs an update (<see cref="IStalenessWeight"/>).</summary>
public enum StalenessKind
{
    /// <summary><see cref="ConstantStaleness"/>.</summary>
    Constant,

    /// <summary><see cref="PolynomialStaleness"/> (FedBuff's default, a = ½).</summary>
    Polynomial,

    /// <summary><see cref="HingeStaleness"/>.</summary>
    Hinge,
}

/// <summary>
/// Buffered asynchronous aggregation (FedBuff) and the simulated client speeds its comparison needs (YAML <c>async:</c>).
/// </summary>
public sealed record AsyncOptions
{
    /// <summary>K: updates per aggregation; null = federation.clients_per_round (so a synchronous round's count).</summary>
    public int? BufferSize { get; init; }

    /// <summary>Clients training at once; null = federation.clients_per_round (the synchronous runs' parallelism).</summary>
    public int? Concurrency { get; init; }

    /// <summary>How an update's weight falls with its staleness τ (FedBuff's experiments: polynomial).</summary>
    public StalenessKind Staleness { get; init; } = StalenessKind.Polynomial;

    /// <summary>a of the polynomial function (FedBuff: ½).</summary>
    public double StalenessExponent { get; init; } = 0.5;

    /// <summary>a of the hinge function (FedAsync: 10).</summary>
    public double HingeSlope { get; init; } = 10;

    /// <summary>b of the hinge function, in versions (FedAsync: 4).</summary>
    public int HingeCutoff { get; init; } = 4;

    /// <summary>η_g of x ← x + η_g·(1/K)·Σ s(τ_i)·Δ_i (FedBuff's server learning rate; 1 = the plain mean of the deltas).</summary>
    public double ServerLearningRate { get; init; } = 1.0;

    /// <summary>τ_max: an update more than this many versions stale is refused (the network server tells its client why;
    /// simulation drops it), so a client far behind cannot pull the global back; null = every staleness is accepted.</summary>
    public int? MaxStaleness { get; init; }

    /// <summary>Per-client speed factors f_i (a task of client i takes f_i × local steps units of virtual time); empty =
    /// every client 1, or <see cref="SlowClients"/> of them <see cref="SlowFactor"/>.</summary>
    public IReadOnlyList<double> ClientSpeeds { get; init; } = [];

    /// <summary>Shorthand for <see cref="ClientSpeeds"/>: the first this many clients (client-0 …) have factor
    /// <see cref="SlowFactor"/>, the others 1.</summary>
    public int SlowClients { get; init; }

    /// <summary>The speed factor of the <see cref="SlowClients"/>.</summary>
    public double SlowFactor { get; init; } = 1;

    /// <summary>K for <paramref name="federation"/>.</summary>
    public int BufferSizeFor(FederationOptions federation) => BufferSize ?? Math.Min(federation.ClientsPerRound, federation.TotalClients);

    /// <summary>The concurrency for <paramref name="federation"/>.</summary>
    public int ConcurrencyFor(FederationOptions federation) => Concurrency ?? Math.Min(federation.ClientsPerRound, federation.TotalClients);

    /// <summary>Each client's speed factor (one per client).</summary>
    public IReadOnlyList<double> SpeedsFor(int totalClients) =>
        ClientSpeeds.Count > 0 ? ClientSpeeds : Enumerable.Range(0, totalClients).Select(i => i < SlowClients ? SlowFactor : 1.0).ToArray();

    /// <summary>The staleness function these options name.</summary>
    public IStalenessWeight CreateWeight() => Staleness switch
    {
        StalenessKind.Constant => new ConstantStaleness(),
        StalenessKind.Polynomial => new PolynomialStaleness(StalenessExponent),
        StalenessKind.Hinge => new HingeStaleness(HingeSlope, HingeCutoff),
        _ => throw new ArgumentOutOfRangeException(nameof(Staleness), Staleness, "unknown staleness function"),
    };

    /// <summary>The YAML name of a staleness function.</summary>
    public static string Name(StalenessKind kind) => kind.ToString().ToLowerInvariant();

    /// <summary>Reads constant, polynomial or hinge.</summary>
    /// <exception cref="ArgumentException">Any other name (listing the known ones).</exception>
    public static StalenessKind ParseStaleness(string text) => text.Trim().ToLowerInvariant() switch
    {
        "constant" => StalenessKind.Constant,
        "polynomial" => StalenessKind.Polynomial,
        "hinge" => StalenessKind.Hinge,
        _ => throw new ArgumentException($"async.staleness '{text}': expected constant, polynomial or hinge"),
    };

    /// <summary>Every problem of these options for <paramref name="federation"/>, one line each, naming the YAML key.</summary>
    public IReadOnlyList<string> Failures(FederationOptions federation)
    {
        var failures = new List<string>();
        if (BufferSize is <= 0) failures.Add($"async.buffer_size must be positive, got {BufferSize}");
        if (Concurrency is <= 0) failures.Add($"async.concurrency must be positive, got {Concurrency}");
        if (Concurrency > federation.TotalClients)
            failures.Add($"async.concurrency {Concurrency} exceeds the {federation.TotalClients} clients (a client trains one task at a time)");
        if (MaxStaleness is < 0) failures.Add($"async.max_staleness must be ≥ 0, got {MaxStaleness}");
        if (!(StalenessExponent >= 0) || double.IsInfinity(StalenessExponent)) failures.Add($"async.staleness_exponent must be finite and ≥ 0, got {StalenessExponent}");
        if (!(HingeSlope >= 0) || double.IsInfinity(HingeSlope)) failures.Add($"async.hinge_slope must be finite and ≥ 0, got {HingeSlope}");
        if (HingeCutoff < 0) failures.Add($"async.hinge_cutoff must be ≥ 0, got {HingeCutoff}");
        if (!(ServerLearningRate > 0) || double.IsInfinity(ServerLearningRate))
            failures.Add($"async.server_learning_rate must be finite and positive, got {ServerLearningRate}");
        if (ClientSpeeds.Count > 0 && ClientSpeeds.Count != federation.TotalClients)
            failures.Add($"async.client_speeds lists {ClientSpeeds.Count} factors for {federation.TotalClients} clients; give one per client");
        foreach (double f in ClientSpeeds)
            if (!(f > 0) || double.IsInfinity(f)) failures.Add($"async.client_speeds: {f} is not a finite positive speed factor");
        if (ClientSpeeds.Count > 0 && SlowClients > 0) failures.Add("async.client_speeds and async.slow_clients both set the speeds; give one of them");
        if (SlowClients < 0 || SlowClients > federation.TotalClients)
            failures.Add($"async.slow_clients must be in [0, {federation.TotalClients}], got {SlowClients}");
        if (!(SlowFactor > 0) || double.IsInfinity(SlowFactor)) failures.Add($"async.slow_factor must be finite and positive, got {SlowFactor}");
        return failures;
    }
}
