using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Privacy;

/// <summary>Settings of <see cref="ServerSideFixedClipping"/>.</summary>
public sealed record FixedClippingOptions
{
    /// <summary>σ: noise standard deviation over the clipping norm; the σ of <see cref="RdpAccountant"/>.</summary>
    public required double NoiseMultiplier { get; init; }

    /// <summary>C: every client update y_i − x is scaled down to at most this L2 norm.</summary>
    public required double ClippingNorm { get; init; }

    /// <summary>m, the fixed denominator of the mean (the expected number of sampled clients); null = the number of
    /// updates that arrived. A fixed m keeps the sensitivity C/m when clients drop out.</summary>
    public int? ClientsPerRound { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming every invalid setting.</summary>
    public void Validate()
    {
        var errors = new List<string>();
        if (!(NoiseMultiplier >= 0) || double.IsPositiveInfinity(NoiseMultiplier)) errors.Add($"NoiseMultiplier must be finite and ≥ 0, got {NoiseMultiplier}");
        if (!(ClippingNorm > 0) || double.IsPositiveInfinity(ClippingNorm)) errors.Add($"ClippingNorm must be positive and finite, got {ClippingNorm}");
        if (ClientsPerRound is <= 0) errors.Add($"ClientsPerRound must be ≥ 1 when set, got {ClientsPerRound}");
        if (errors.Count > 0) throw new ArgumentException(string.Join("; ", errors));
    }
}

/// <summary>
/// Central DP with fixed clipping, as a decorator around any strategy: the server clips each update Δ_i = y_i − x to
/// norm C, averages the clipped updates with equal weights, adds N(0, (σ·C/m)²) to the average, and hands the inner
/// strategy that one noisy update (see <see cref="PreAggregatedUpdate"/>).
/// </summary>
/// <remarks>
/// <para>McMahan, Ramage, Talwar, Zhang, "Learning Differentially Private Recurrent Language Models", ICLR 2018 (DP-FedAvg,
/// and DP-FedAvgM when the inner strategy is FedAvgM); the noise scale is Flower's
/// DifferentialPrivacyServerSideFixedClipping: std = noise_multiplier · clipping_norm / num_sampled_clients on the
/// averaged update. The mechanism is <see cref="DpMean"/>; account for it with <see cref="RdpAccountant"/>, q = m / total
/// clients, σ = <see cref="FixedClippingOptions.NoiseMultiplier"/>.</para>
/// <para>Difference from Flower: Flower adds the noise to the inner strategy's output parameters; here it is added to
/// the mean update before the inner strategy runs, so with FedAvg the result is the same (x + mean + noise), and with
/// FedAvgM/FedOpt the server optimiser only ever sees the noisy mean, so its state (momentum, moments) is a
/// post-processing of DP outputs as the guarantee requires.</para>
/// <para>The server sees each client's unclipped update: this protects the released global models, not the updates
/// against the server (that needs client-side clipping plus secure aggregation). Stateless; the inner state passes
/// through. Example counts are ignored (equal weights).</para>
/// </remarks>
public sealed class ServerSideFixedClipping : DelegatingStrategy
{
    /// <summary>The noise stream name of the update noise.</summary>
    public const string UpdateNoiseStream = "dp/update";

    readonly NoiseSource noise;

    /// <summary>Wraps <paramref name="innerStrategy"/>.</summary>
    public ServerSideFixedClipping(IFederatedStrategy innerStrategy, FixedClippingOptions options, NoiseSource noise)
        : base(innerStrategy)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(noise);
        options.Validate();
        Options = options;
        this.noise = noise;
    }

    /// <summary>The settings.</summary>
    public FixedClippingOptions Options { get; }

    /// <summary>The last round's ‖Δ_i‖ before clipping, by client id; for logging how often C bites.</summary>
    public IReadOnlyDictionary<string, double> LastNorms { get; private set; } = new Dictionary<string, double>();

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        using var generator = noise.CreateGenerator(round, UpdateNoiseStream);
        using var scope = NewDisposeScope();
        var mean = DpMean.Compute(global, updates, Options.ClippingNorm, Options.NoiseMultiplier,
            Options.ClientsPerRound ?? updates.Count, generator);
        var combined = PreAggregatedUpdate.Create(global, mean.Delta, PreAggregatedUpdate.TotalExamples(updates));
        var next = InnerStrategy.Aggregate(round, global, new[] { combined });
        LastNorms = updates.Select((u, i) => (u.ClientId, mean.Norms[i])).ToDictionary(p => p.ClientId, p => p.Item2);
        foreach (var t in next.Values) t.MoveToOuterDisposeScope();
        return next;
    }
}
