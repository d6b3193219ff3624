namespace FedLlm.Federation.Personalization;

/// <summary>The algorithms for unequal participants, added to a registry: Ditto and the two split adapters, with their
/// client hooks (a network client needs the hooks only; the run's options reach the strategies through
/// <see cref="StrategyOptions"/>).</summary>
public static class PersonalizationAlgorithms
{
    /// <summary>Every algorithm name this adds.</summary>
    public static IReadOnlyList<string> Names { get; } = [Ditto.HookName, SplitLora.AlgorithmName(SharedFactor.A), SplitLora.AlgorithmName(SharedFactor.B)];

    /// <summary><paramref name="registry"/> with the algorithms and hooks it does not have yet.</summary>
    public static AlgorithmRegistry With(AlgorithmRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        var additions = new (string Name, Func<StrategyOptions, IFederatedStrategy> Create)[]
        {
            (Ditto.HookName, o => new Ditto(o)),
            (SplitLora.AlgorithmName(SharedFactor.A), _ => new SplitLora(SharedFactor.A)),
            (SplitLora.AlgorithmName(SharedFactor.B), _ => new SplitLora(SharedFactor.B)),
        };
        foreach (var (name, create) in additions)
            if (!registry.Contains(name)) registry = registry.With(name, create);
        foreach (IClientHooks hook in new IClientHooks[] { new DittoClientHooks(), new SplitLoraClientHooks() })
            if (!registry.HookNames.Contains(hook.Name)) registry = registry.With(hook);
        return registry;
    }
}
