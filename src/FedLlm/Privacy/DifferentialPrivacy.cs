using FedLlm.Federation;

namespace FedLlm.Privacy;

/// <summary>
/// Puts a run's DP mechanism around any strategy, and registers the client hooks it needs: the one place that maps a
/// <see cref="PrivacyMode"/> to its decorator.
/// </summary>
public static class DifferentialPrivacy
{
    /// <summary>The client hooks of the DP modes (client-side clipping, local DP).</summary>
    public static IReadOnlyList<IClientHooks> ClientHooks { get; } = [new ClientClippingHooks(), new LocalDpClientHooks()];

    /// <summary><paramref name="registry"/> with <see cref="ClientHooks"/> (those it lacks).</summary>
    public static AlgorithmRegistry WithClientHooks(AlgorithmRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        return ClientHooks.Where(h => !registry.HookNames.Contains(h.Name)).Aggregate(registry, (r, h) => r.With(h));
    }

    /// <summary><paramref name="inner"/> under the mechanism of <paramref name="plan"/>, with accounting outermost.</summary>
    /// <param name="seeding">How noise is seeded (resolved: the run seed in simulation, cryptographic on a server).</param>
    /// <param name="runSeed">The run seed (used with <see cref="NoiseSeeding.RunSeed"/>).</param>
    /// <param name="inner">The algorithm to make private.</param>
    /// <param name="options">Mode, clipping norm and adaptive-clipping settings.</param>
    /// <param name="plan">The noise multiplier and budget worked out for the run.</param>
    public static IFederatedStrategy Wrap(IFederatedStrategy inner, PrivacyOptions options, PrivacyPlan plan, NoiseSeeding seeding, long runSeed)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(plan);
        var noise = NoiseSource.Create(seeding, runSeed);
        var fixedClipping = new FixedClippingOptions { NoiseMultiplier = plan.NoiseMultiplier, ClippingNorm = options.ClippingNorm, ClientsPerRound = plan.ClientsPerRound };
        IFederatedStrategy mechanism = plan.Mode switch
        {
            PrivacyMode.ServerFixed => new ServerSideFixedClipping(inner, fixedClipping, noise),
            PrivacyMode.ServerAdaptive => new ServerSideAdaptiveClipping(inner, PrivacyPlan.Adaptive(options, plan.NoiseMultiplier, plan.ClientsPerRound), noise),
            PrivacyMode.ClientFixed => new ClientSideFixedClipping(inner, fixedClipping, noise),
            PrivacyMode.Local => new LocalDifferentialPrivacy(inner, options.ClippingNorm, plan.NoiseMultiplier, seeding == NoiseSeeding.RunSeed ? runSeed : null),
            _ => throw new ArgumentOutOfRangeException(nameof(plan), plan.Mode, null),
        };
        return new PrivacyAccounting(mechanism, plan);
    }
}
