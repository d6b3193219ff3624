namespace FedLlm.Federation.Robust;

/// <summary>The Byzantine-robust aggregation rules a run can use.</summary>
public enum RobustRule
{
    /// <summary><see cref="Robust.Krum"/> with m = 1.</summary>
    Krum,

    /// <summary><see cref="Robust.Krum"/> keeping several updates.</summary>
    MultiKrum,

    /// <summary><see cref="CoordinateMedian"/>.</summary>
    Median,

    /// <summary><see cref="Robust.TrimmedMean"/>.</summary>
    TrimmedMean,

    /// <summary><see cref="MedianNormClipping"/>.</summary>
    NormClip,

    /// <summary><see cref="FlTrust"/>, with the server's root-set update.</summary>
    FlTrust,

    /// <summary><see cref="Robust.Flame"/>: majority cluster, median-norm clipping, noise.</summary>
    Flame,
}

/// <summary>
/// Robust aggregation of a run (YAML section <c>robust:</c>): the rule and its parameters. Composes with any algorithm
/// through <see cref="RobustAggregation"/>; validation names the YAML keys.
/// </summary>
public sealed record RobustOptions
{
    /// <summary>The rules' YAML names, in <see cref="RobustRule"/> order.</summary>
    public static readonly IReadOnlyList<string> RuleNames = ["krum", "multi-krum", "median", "trimmed-mean", "norm-clip", "fltrust", "flame"];

    /// <summary>The rule.</summary>
    public RobustRule Rule { get; init; } = RobustRule.Median;

    /// <summary>Krum's f, the attackers tolerated per round; null = the most the round size allows, ⌊(m − 3)/2⌋.</summary>
    public int? ByzantineClients { get; init; }

    /// <summary>Multi-Krum's number of kept updates; null = m − f.</summary>
    public int? Selected { get; init; }

    /// <summary>Trimmed mean's β, the fraction trimmed at each end (Flower: 0.2).</summary>
    public double TrimFraction { get; init; } = 0.2;

    /// <summary>Norm clipping's bound as a multiple of the round's median norm.</summary>
    public double NormFactor { get; init; } = 1.0;

    /// <summary>FLTrust: the size of the server's root set (Cao et al. 2021 use 100 examples).</summary>
    public int RootExamples { get; init; } = 100;

    /// <summary>FLTrust: the root set's file (Alpaca schema); null = a seeded sample of the run's training data
    /// (simulation only; a server holds no training data).</summary>
    public string? RootData { get; init; }

    /// <summary>FLAME's λ: the noise on the aggregate has σ = λ·S_t, S_t the round's median update norm (Nguyen et al.
    /// 2022 use 0.01 for their NLP task, 0.001 for image classification).</summary>
    public double FlameNoiseLambda { get; init; } = DefaultFlameNoiseLambda;

    /// <summary>The default of <see cref="FlameNoiseLambda"/>.</summary>
    public const double DefaultFlameNoiseLambda = 0.01;

    /// <summary>The YAML name of <paramref name="rule"/>.</summary>
    public static string Name(RobustRule rule) => RuleNames[(int)rule];

    /// <summary>Parses a rule name.</summary>
    /// <exception cref="ArgumentException">Unknown name; the message names <paramref name="key"/> and the known ones.</exception>
    public static RobustRule ParseRule(string text, string key = "robust.rule")
    {
        int index = RuleNames.ToList().IndexOf(text.Trim().ToLowerInvariant());
        return index >= 0 ? (RobustRule)index : throw new ArgumentException($"{key} '{text}': expected one of {string.Join(", ", RuleNames)}");
    }

    /// <summary>f as used for rounds of <paramref name="clientsPerRound"/> clients.</summary>
    public int EffectiveByzantineClients(int clientsPerRound) => ByzantineClients ?? Math.Max(0, (clientsPerRound - 3) / 2);

    /// <summary>Every invalid setting for rounds of <paramref name="federation"/>, each naming its YAML key.</summary>
    public IReadOnlyList<string> Failures(FederationOptions federation)
    {
        ArgumentNullException.ThrowIfNull(federation);
        var failures = new List<string>();
        int m = Math.Min(federation.ClientsPerRound, federation.TotalClients);
        if (ByzantineClients is < 0) failures.Add($"robust.byzantine_clients must be ≥ 0, got {ByzantineClients}");
        bool krum = Rule is RobustRule.Krum or RobustRule.MultiKrum;
        if (!krum && (ByzantineClients is not null || Selected is not null))
            failures.Add($"robust.byzantine_clients and robust.selected only apply to krum and multi-krum (rule is {Name(Rule)})");
        if (krum && ByzantineClients is not < 0)
        {
            int f = EffectiveByzantineClients(m);
            if (m <= 2 * f + 2)
                failures.Add($"robust.rule {Name(Rule)} with f = {f} needs more than {2 * f + 2} clients per round (federation.clients_per_round is {m})");
            int kept = Selected ?? (Rule == RobustRule.Krum ? 1 : m - f);
            if (Rule == RobustRule.Krum && Selected is not null and not 1) failures.Add($"robust.selected must be 1 for krum (use multi-krum), got {Selected}");
            if (kept < 1 || kept > m - f) failures.Add($"robust.selected must be in [1, m − f = {m - f}], got {kept}");
        }
        if (!(TrimFraction is >= 0 and < 0.5)) failures.Add($"robust.trim_fraction must be in [0, 0.5), got {TrimFraction}");
        if (Rule != RobustRule.TrimmedMean && TrimFraction != 0.2) failures.Add($"robust.trim_fraction only applies to trimmed-mean (rule is {Name(Rule)})");
        if (!(NormFactor > 0) || double.IsInfinity(NormFactor)) failures.Add($"robust.norm_factor must be positive and finite, got {NormFactor}");
        if (Rule != RobustRule.NormClip && NormFactor != 1.0) failures.Add($"robust.norm_factor only applies to norm-clip (rule is {Name(Rule)})");
        if (RootExamples <= 0) failures.Add($"robust.root_examples must be positive, got {RootExamples}");
        if (Rule != RobustRule.FlTrust && (RootData is not null || RootExamples != 100))
            failures.Add($"robust.root_data and robust.root_examples only apply to fltrust (rule is {Name(Rule)})");
        if (!(FlameNoiseLambda >= 0) || double.IsInfinity(FlameNoiseLambda)) failures.Add($"robust.flame_noise_lambda must be finite and ≥ 0, got {FlameNoiseLambda}");
        if (Rule != RobustRule.Flame && FlameNoiseLambda != DefaultFlameNoiseLambda)
            failures.Add($"robust.flame_noise_lambda only applies to flame (rule is {Name(Rule)})");
        if (RootData is not null && !File.Exists(RootData)) failures.Add($"robust.root_data: file '{RootData}' not found");
        return failures;
    }

    /// <summary>The rule for rounds of <paramref name="clientsPerRound"/> clients; FLTrust takes its root update from
    /// <paramref name="rootUpdate"/>(round, global), FLAME its noise from <paramref name="noise"/>.</summary>
    public IRobustAggregator Create(int clientsPerRound,
        Func<int, IReadOnlyDictionary<string, TorchSharp.torch.Tensor>, IReadOnlyDictionary<string, TorchSharp.torch.Tensor>>? rootUpdate = null,
        Privacy.NoiseSource? noise = null)
    {
        int f = EffectiveByzantineClients(clientsPerRound);
        return Rule switch
        {
            RobustRule.Krum => new Krum(f),
            RobustRule.MultiKrum => new Krum(f, Selected ?? clientsPerRound - f),
            RobustRule.Median => new CoordinateMedian(),
            RobustRule.TrimmedMean => new TrimmedMean(TrimFraction),
            RobustRule.NormClip => new MedianNormClipping(NormFactor),
            RobustRule.FlTrust => new FlTrust(rootUpdate ?? throw new ArgumentException("robust.rule fltrust needs the server's root-set training")),
            RobustRule.Flame => new Flame(FlameNoiseLambda, noise ?? throw new ArgumentException("robust.rule flame needs a noise source")),
            _ => throw new ArgumentOutOfRangeException(nameof(Rule), Rule, null),
        };
    }
}
