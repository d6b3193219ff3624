using FedLlm.Federation.Simulation;

namespace FedLlm.Federation.LowRank;

/// <summary>The heterogeneous-rank algorithms, added to a registry: HetLoRA, FlexLoRA (exact product aggregation when
/// every client has the global rank) and FLoRA (stacking), with the rank-budget and FLoRA client hooks.</summary>
public static class LowRankAlgorithms
{
    /// <summary>Every algorithm name this adds.</summary>
    public static IReadOnlyList<string> Names { get; } = ["hetlora", "flexlora", Flora.AlgorithmName];

    /// <summary><paramref name="registry"/> with the algorithms and the hook it does not have yet; the per-client rank
    /// table names clients as in-process clients are named (a network client declares its own rank instead).</summary>
    public static AlgorithmRegistry With(AlgorithmRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        if (!registry.Contains("hetlora")) registry = registry.With("hetlora", o => new HetLora(o, InProcessClients.ClientId));
        if (!registry.Contains("flexlora")) registry = registry.With("flexlora", o => new FlexLora(o, InProcessClients.ClientId));
        if (!registry.Contains(Flora.AlgorithmName)) registry = registry.With(Flora.AlgorithmName, o => new Flora(o, InProcessClients.ClientId));
        if (!registry.HookNames.Contains(RankBudget.HookName)) registry = registry.With(new RankBudgetClientHooks());
        if (!registry.HookNames.Contains(FloraClientHooks.HookName)) registry = registry.With(new FloraClientHooks());
        return registry;
    }
}
