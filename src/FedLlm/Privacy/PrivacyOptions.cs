using FedLlm.Federation;

namespace FedLlm.Privacy;

/// <summary>Where clipping and noise happen in a differentially private run.</summary>
public enum PrivacyMode
{
    /// <summary>DP-FedAvg: the server clips each update to C and adds N(0, (σC/m)²) to the mean
    /// (<see cref="ServerSideFixedClipping"/>).</summary>
    ServerFixed,

    /// <summary>As <see cref="ServerFixed"/>, with C following a quantile of the update norms
    /// (<see cref="ServerSideAdaptiveClipping"/>).</summary>
    ServerAdaptive,

    /// <summary>Each client clips its own update to C before sending; the server adds the noise
    /// (<see cref="ClientSideFixedClipping"/>). With secure aggregation the server would see only the sum.</summary>
    ClientFixed,

    /// <summary>Local DP: each client clips to C and adds N(0, (σC)²) itself, so the update is private when it leaves
    /// the client (<see cref="LocalDifferentialPrivacy"/>).</summary>
    Local,
}

/// <summary>
/// Client-level differential privacy of a run (YAML section <c>privacy:</c>): the mechanism, its clipping norm and noise
/// multiplier σ, or a target (ε, δ) from which σ is derived with the RDP accountant, and how the noise is seeded.
/// </summary>
/// <remarks>Validation names the YAML keys, because this record is what run.yaml and server.yaml map onto.</remarks>
public sealed record PrivacyOptions
{
    /// <summary>The modes' YAML names, in <see cref="PrivacyMode"/> order.</summary>
    public static readonly IReadOnlyList<string> ModeNames = ["server-fixed", "server-adaptive", "client-fixed", "local"];

    /// <summary>Where clipping and noise happen.</summary>
    public PrivacyMode Mode { get; init; } = PrivacyMode.ServerFixed;

    /// <summary>C, the L2 bound of one client's update over the whole adapter (the initial C of adaptive clipping).</summary>
    public double ClippingNorm { get; init; } = 0.1;

    /// <summary>σ; null = derived from <see cref="TargetEpsilon"/> for the run's rounds.</summary>
    public double? NoiseMultiplier { get; init; }

    /// <summary>The ε budget at <see cref="Delta"/>: with σ unset, σ is the smallest that meets it after the last round;
    /// with σ set, a run that would exceed it is refused (or stopped, <see cref="StopAtBudget"/>).</summary>
    public double? TargetEpsilon { get; init; }

    /// <summary>δ of the reported (ε, δ); keep it well below 1 / clients.</summary>
    public double Delta { get; init; } = 1e-5;

    /// <summary>How the noise generators are seeded; null = from the run seed in a simulation, cryptographic on a server.</summary>
    public NoiseSeeding? Seeding { get; init; }

    /// <summary>Run only the rounds that fit in <see cref="TargetEpsilon"/> instead of refusing a run that exceeds it.</summary>
    public bool StopAtBudget { get; init; }

    /// <summary>Adaptive clipping's γ (Andrew et al. 2021: 0.5).</summary>
    public double TargetUnclippedQuantile { get; init; } = 0.5;

    /// <summary>Adaptive clipping's η_C (Andrew et al. 2021: 0.2).</summary>
    public double ClippingNormLearningRate { get; init; } = 0.2;

    /// <summary>Adaptive clipping's σ_b; null = clients per round / 20.</summary>
    public double? ClippedCountStddev { get; init; }

    /// <summary>The YAML name of <paramref name="mode"/>.</summary>
    public static string Name(PrivacyMode mode) => ModeNames[(int)mode];

    /// <summary>Parses a mode name.</summary>
    /// <exception cref="ArgumentException">Unknown name; the message names <paramref name="key"/> and lists the known ones.</exception>
    public static PrivacyMode ParseMode(string text, string key = "privacy.mode")
    {
        int index = ModeNames.ToList().IndexOf(text.Trim().ToLowerInvariant());
        return index >= 0 ? (PrivacyMode)index : throw new ArgumentException($"{key} '{text}': expected one of {string.Join(", ", ModeNames)}");
    }

    /// <summary>Every invalid setting, each naming its YAML key; empty when valid.</summary>
    public IReadOnlyList<string> Failures(FederationOptions federation)
    {
        ArgumentNullException.ThrowIfNull(federation);
        var failures = new List<string>();
        if (!(ClippingNorm > 0) || double.IsInfinity(ClippingNorm)) failures.Add($"privacy.clipping_norm must be positive and finite, got {ClippingNorm}");
        if (NoiseMultiplier is { } sigma && (!(sigma >= 0) || double.IsInfinity(sigma)))
            failures.Add($"privacy.noise_multiplier must be finite and ≥ 0, got {sigma}");
        if (TargetEpsilon is { } epsilon && (!(epsilon > 0) || double.IsInfinity(epsilon)))
            failures.Add($"privacy.target_epsilon must be positive and finite, got {epsilon}");
        if (NoiseMultiplier is null && TargetEpsilon is null)
            failures.Add("privacy: set privacy.noise_multiplier or privacy.target_epsilon (σ is then derived from the budget)");
        if (!(Delta > 0 && Delta < 1)) failures.Add($"privacy.delta must be in (0, 1), got {Delta}");
        else if (Delta >= 1.0 / federation.TotalClients)
            failures.Add($"privacy.delta {Delta} is not below 1 / clients = {1.0 / federation.TotalClients}; such a δ allows releasing a whole client");
        if (StopAtBudget && (TargetEpsilon is null || NoiseMultiplier is null))
            failures.Add("privacy.stop_at_budget needs both privacy.noise_multiplier and privacy.target_epsilon (with σ derived from the budget the run ends within it anyway)");
        if (Mode == PrivacyMode.ServerAdaptive)
        {
            if (!(TargetUnclippedQuantile is >= 0 and <= 1)) failures.Add($"privacy.target_unclipped_quantile must be in [0, 1], got {TargetUnclippedQuantile}");
            if (!(ClippingNormLearningRate >= 0) || double.IsInfinity(ClippingNormLearningRate))
                failures.Add($"privacy.clipping_norm_learning_rate must be finite and ≥ 0, got {ClippingNormLearningRate}");
            if (ClippedCountStddev is { } s && (!(s >= 0) || double.IsInfinity(s)))
                failures.Add($"privacy.clipped_count_stddev must be finite and ≥ 0, got {s}");
        }
        else if (ClippedCountStddev is not null || TargetUnclippedQuantile != 0.5 || ClippingNormLearningRate != 0.2)
        {
            failures.Add($"privacy.target_unclipped_quantile, clipping_norm_learning_rate and clipped_count_stddev only apply to mode server-adaptive (mode is {Name(Mode)})");
        }
        if (failures.Count == 0)
        {
            try
            {
                PrivacyPlan.Create(this, federation);
            }
            catch (ArgumentException e)
            {
                failures.Add(e.Message);
            }
        }
        return failures;
    }
}
