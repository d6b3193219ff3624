using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Aggregation;

/// <summary>
/// Wraps a round's already-combined update Δ (a robust aggregate, a clipped-and-noised DP mean) as the one client update
/// y = x + Δ that a decorator hands to its inner strategy.
/// </summary>
/// <remarks>
/// This is how decorators that replace the averaging step compose with every algorithm without editing any: the inner
/// FedAvg averages one update and returns x + Δ; FedAvgM and FedOpt compute their pseudo-gradient y − x = Δ and run
/// their momentum or adaptive step on it, which is where DP-FedAvgM (McMahan et al. 2018; Andrew et al. 2021) and
/// robust server optimisers put the combined update. SCAFFOLD needs per-client control deltas, which one combined
/// update does not carry, so it refuses it with an <see cref="AggregationException"/>.
/// </remarks>
public static class PreAggregatedUpdate
{
    /// <summary>The client id of the combined update.</summary>
    public const string ClientId = "aggregate";

    /// <summary>The update y = x + Δ (in x's dtype) with <paramref name="exampleCount"/> (at least 1) as its n.</summary>
    /// <exception cref="ArgumentException">Δ does not have the global's keys, shapes and dtypes.</exception>
    public static ClientUpdate Create(
        IReadOnlyDictionary<string, Tensor> global, IReadOnlyDictionary<string, Tensor> delta, long exampleCount)
    {
        ArgumentNullException.ThrowIfNull(global);
        ArgumentNullException.ThrowIfNull(delta);
        if (TensorMaps.FindMismatch(global, delta) is { } mismatch)
            throw new ArgumentException($"combined update: tensor '{mismatch.Key}' {mismatch.Problem}", nameof(delta));
        using var noGrad = torch.no_grad();
        var weights = new Dictionary<string, Tensor>(global.Count);
        foreach (var (key, x) in global)
        {
            using var scope = torch.NewDisposeScope();
            var working = TensorMaps.WorkingType(x.dtype);
            weights[key] = x.to(working).add(delta[key].to(working), Runtime.Scalars.One).to(x.dtype).MoveToOuterDisposeScope();
        }
        return new ClientUpdate(ClientId, weights, Math.Max(exampleCount, 1)); // ≥ 1: FedAvg cannot average a zero weight
    }

    /// <summary>Σ n_i of the round, the combined update's example count (saturating, never negative).</summary>
    public static long TotalExamples(IReadOnlyList<ClientUpdate> updates)
    {
        long total = 0;
        foreach (var u in updates) total = u.ExampleCount > long.MaxValue - total ? long.MaxValue : total + Math.Max(u.ExampleCount, 0);
        return total;
    }
}
