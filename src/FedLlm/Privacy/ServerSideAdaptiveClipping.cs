using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Privacy;

/// <summary>Settings of <see cref="ServerSideAdaptiveClipping"/>; defaults are Andrew et al.'s (and Flower's).</summary>
public sealed record AdaptiveClippingOptions
{
    /// <summary>z: the noise multiplier of the whole round (update and clipped count together), the σ to give
    /// <see cref="RdpAccountant"/>.</summary>
    public required double NoiseMultiplier { get; init; }

    /// <summary>m: expected clients per round; the fixed denominator of the mean and of the clipped fraction.</summary>
    public required int ClientsPerRound { get; init; }

    /// <summary>C₀, the clipping norm of the first round. Paper and Flower: 0.1.</summary>
    public double InitialClippingNorm { get; init; } = 0.1;

    /// <summary>γ, the fraction of updates that should end up unclipped. Paper and Flower: 0.5 (the median norm).</summary>
    public double TargetUnclippedQuantile { get; init; } = 0.5;

    /// <summary>η_C, the learning rate of the geometric update of C. Paper and Flower: 0.2.</summary>
    public double ClippingNormLearningRate { get; init; } = 0.2;

    /// <summary>σ_b, the std of the noise on the unclipped count; null = m/20, the paper's and Flower's default.</summary>
    public double? ClippedCountStddev { get; init; }

    /// <summary>σ_b as used: the setting, or m/20.</summary>
    public double EffectiveClippedCountStddev => ClippedCountStddev ?? ClientsPerRound / 20.0;

    /// <summary>z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2), the update noise multiplier that leaves the round's total at z
    /// (Andrew et al. 2021, Theorem 1); 0 when z = 0.</summary>
    public double UpdateNoiseMultiplier
    {
        get
        {
            if (NoiseMultiplier == 0) return 0;
            double countTerm = Math.Pow(2 * EffectiveClippedCountStddev, -2);
            return Math.Pow(Math.Pow(NoiseMultiplier, -2) - countTerm, -0.5);
        }
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming every invalid setting.</summary>
    public void Validate()
    {
        var errors = new List<string>();
        if (!(NoiseMultiplier >= 0) || double.IsPositiveInfinity(NoiseMultiplier)) errors.Add($"NoiseMultiplier must be finite and ≥ 0, got {NoiseMultiplier}");
        if (ClientsPerRound <= 0) errors.Add($"ClientsPerRound must be ≥ 1, got {ClientsPerRound}");
        if (!(InitialClippingNorm > 0) || double.IsPositiveInfinity(InitialClippingNorm)) errors.Add($"InitialClippingNorm must be positive and finite, got {InitialClippingNorm}");
        if (!(TargetUnclippedQuantile >= 0 && TargetUnclippedQuantile <= 1)) errors.Add($"TargetUnclippedQuantile must be in [0, 1], got {TargetUnclippedQuantile}");
        if (!(ClippingNormLearningRate >= 0) || double.IsPositiveInfinity(ClippingNormLearningRate)) errors.Add($"ClippingNormLearningRate must be finite and ≥ 0, got {ClippingNormLearningRate}");
        if (ClippedCountStddev is { } s && (!(s >= 0) || double.IsPositiveInfinity(s))) errors.Add($"ClippedCountStddev must be finite and ≥ 0, got {s}");
        // The count noise spends part of the budget; it can only do so if it alone is weaker than the whole round's.
        if (errors.Count == 0 && NoiseMultiplier > 0 && !(2 * EffectiveClippedCountStddev > NoiseMultiplier))
            errors.Add($"with NoiseMultiplier {NoiseMultiplier}, the clipped-count std must exceed {NoiseMultiplier / 2} (2σ_b > z), got {EffectiveClippedCountStddev}");
        if (errors.Count > 0) throw new ArgumentException(string.Join("; ", errors));
    }
}

/// <summary>
/// Central DP with adaptive clipping: like <see cref="ServerSideFixedClipping"/>, but C follows a target quantile of the
/// update norms, estimated privately: each round the unclipped fraction b̃ = (Σ_i 1[‖Δ_i‖ ≤ C] + N(0, σ_b²))/m moves C
/// geometrically, C ← C·exp(−η_C·(b̃ − γ)).
/// </summary>
/// <remarks>
/// <para>Andrew, Thakkar, McMahan, Ramaswamy, "Differentially Private Learning with Adaptive Clipping", NeurIPS 2021,
/// Algorithm 1 (DP-FedAvg with adaptive clipping) and Theorem 1 (the split z_Δ of the noise multiplier z). As Flower's
/// DifferentialPrivacyServerSideAdaptiveClipping, with its defaults (C₀ 0.1, γ 0.5, η_C 0.2, σ_b = m/20).</para>
/// <para>Order within a round, as in the paper: clip with the current C, add noise of std z_Δ·C/m to the mean (C of
/// this round, the one that bounded the sensitivity), then update C for the next round. The bits b_i are computed
/// before any noise and released only through the noisy count.</para>
/// <para>State: C under "dp/clipping_norm" (a float64 scalar) beside the inner strategy's keys; C changes only when the
/// whole round, inner strategy included, succeeds.</para>
/// </remarks>
public sealed class ServerSideAdaptiveClipping : DelegatingStrategy
{
    /// <summary>The state key of C.</summary>
    public const string ClippingNormKey = "dp/clipping_norm";

    /// <summary>The noise stream name of the update noise.</summary>
    public const string UpdateNoiseStream = "dp/update";

    /// <summary>The noise stream name of the clipped-count noise.</summary>
    public const string CountNoiseStream = "dp/clipped-count";

    readonly NoiseSource noise;

    /// <summary>Wraps <paramref name="innerStrategy"/>.</summary>
    public ServerSideAdaptiveClipping(IFederatedStrategy innerStrategy, AdaptiveClippingOptions options, NoiseSource noise)
        : base(innerStrategy)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(noise);
        options.Validate();
        Options = options;
        this.noise = noise;
        ClippingNorm = options.InitialClippingNorm;
    }

    /// <summary>The settings.</summary>
    public AdaptiveClippingOptions Options { get; }

    /// <summary>C for the next round.</summary>
    public double ClippingNorm { get; private set; }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        int m = Options.ClientsPerRound;
        double c = ClippingNorm;
        using var scope = NewDisposeScope();
        DpRoundMean mean;
        using (var generator = noise.CreateGenerator(round, UpdateNoiseStream))
            mean = DpMean.Compute(global, updates, c, Options.UpdateNoiseMultiplier, m, generator);

        double noisyCount;
        using (var generator = noise.CreateGenerator(round, CountNoiseStream))
        using (var draw = torch.randn(1, ScalarType.Float64, generator: generator))
            noisyCount = mean.UnclippedCount + Options.EffectiveClippedCountStddev * draw.item<double>();
        double next = NextClippingNorm(c, noisyCount / m, Options.TargetUnclippedQuantile, Options.ClippingNormLearningRate);

        var combined = PreAggregatedUpdate.Create(global, mean.Delta, PreAggregatedUpdate.TotalExamples(updates));
        var result = InnerStrategy.Aggregate(round, global, new[] { combined });
        ClippingNorm = next; // only after the inner strategy succeeded
        foreach (var t in result.Values) t.MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>C·exp(−η_C·(b̃ − γ)): C grows when fewer than γ of the updates fit (b̃ &lt; γ) and shrinks when more do.</summary>
    public static double NextClippingNorm(double clippingNorm, double unclippedFraction, double targetQuantile, double learningRate) =>
        clippingNorm * Math.Exp(-learningRate * (unclippedFraction - targetQuantile));

    /// <summary>The inner strategy's state plus C under <see cref="ClippingNormKey"/>.</summary>
    public override IReadOnlyDictionary<string, Tensor> State
    {
        get
        {
            var state = new Dictionary<string, Tensor>(InnerStrategy.State);
            state[ClippingNormKey] = torch.tensor(ClippingNorm, ScalarType.Float64);
            return state;
        }
    }

    /// <summary>Restores C and the inner state; an empty state resets both (C to C₀).</summary>
    /// <exception cref="ArgumentException">A non-empty state lacks C, or C is not a positive finite scalar.</exception>
    public override void LoadState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Count == 0)
        {
            InnerStrategy.LoadState(state);
            ClippingNorm = Options.InitialClippingNorm;
            return;
        }
        if (!state.TryGetValue(ClippingNormKey, out var stored))
            throw new ArgumentException($"adaptive clipping state lacks '{ClippingNormKey}'; was it written without DP?", nameof(state));
        if (stored.numel() != 1) throw new ArgumentException($"'{ClippingNormKey}' must be a scalar, got shape [{string.Join(", ", stored.shape)}]", nameof(state));
        double c = stored.to(ScalarType.Float64).item<double>();
        if (!(c > 0) || double.IsPositiveInfinity(c)) throw new ArgumentException($"'{ClippingNormKey}' is {c}; it must be positive and finite", nameof(state));
        InnerStrategy.LoadState(state.Where(kv => kv.Key != ClippingNormKey).ToDictionary(kv => kv.Key, kv => kv.Value));
        ClippingNorm = c;
    }
}
