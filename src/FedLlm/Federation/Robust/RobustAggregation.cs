using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Federation.Robust;

/// <summary>
/// Decorator that replaces the averaging step of any strategy with a Byzantine-robust aggregator: it turns the round's
/// updates into Δ_i = y_i − x, combines them with the <see cref="IRobustAggregator"/>, and hands the inner strategy the
/// single update x + Δ_robust.
/// </summary>
/// <remarks>
/// <para>One mechanism serves every server rule: around FedAvg the result is exactly x + Δ_robust (robust aggregation
/// in place of FedAvg's weighted mean, as Flower's FedMedian, FedTrimmedAvg and Krum strategies); around FedAvgM,
/// FedAdagrad, FedYogi and FedAdam the robust Δ is the pseudo-gradient their momentum or adaptive step runs on, so the
/// server optimiser never sees an attacker's raw update. See <see cref="PreAggregatedUpdate"/>; SCAFFOLD, whose control
/// variates are per client, refuses the combined update.</para>
/// <para>Robust aggregation and central DP do not commute: put <see cref="Privacy.ServerSideFixedClipping"/> outside
/// (DP of the robust aggregate needs the robust rule's own sensitivity analysis, which the clipping decorator does not
/// give) or inside (DP noise first, then a robust rule on one update is the identity), so combine them with care.</para>
/// <para>Stateless itself apart from the last round's report for <see cref="Annotate"/>; the inner strategy's state
/// passes through.</para>
/// </remarks>
public sealed class RobustAggregation : DelegatingStrategy
{
    /// <summary>Wraps <paramref name="innerStrategy"/>, combining updates with <paramref name="aggregator"/>.</summary>
    public RobustAggregation(IFederatedStrategy innerStrategy, IRobustAggregator aggregator)
        : base(innerStrategy)
    {
        ArgumentNullException.ThrowIfNull(aggregator);
        Aggregator = aggregator;
    }

    /// <summary>The robust rule.</summary>
    public IRobustAggregator Aggregator { get; }

    RoundRobust? lastRound;

    /// <inheritdoc/>
    /// <remarks>Adds what the rule did to each client in the round just aggregated.</remarks>
    public override RoundRecord Annotate(RoundRecord record) => base.Annotate(record) with { Robust = lastRound };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        using var scope = NewDisposeScope();
        var deltas = updates.Select(u => new ClientTensors(u.ClientId, TensorMaps.Difference(u.Weights, global))).ToArray();
        var combination = Aggregator.AggregateWithReport(round, global, deltas, Averaging.ExampleCounts(updates));
        var robust = combination.Tensors;
        lastRound = new RoundRobust(Aggregator.Name, combination.ClientWeights, combination.ScoreName, combination.ClientScores);
        if (TensorMaps.FindMismatch(global, robust) is { } mismatch)
            throw new AggregationException($"{Aggregator.Name} returned tensor '{mismatch.Key}' that {mismatch.Problem}", key: mismatch.Key);
        var combined = PreAggregatedUpdate.Create(global, robust, PreAggregatedUpdate.TotalExamples(updates));
        var next = InnerStrategy.Aggregate(round, global, new[] { combined });
        foreach (var t in next.Values) t.MoveToOuterDisposeScope();
        return next;
    }
}
