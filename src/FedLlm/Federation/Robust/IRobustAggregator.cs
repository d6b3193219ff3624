using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Federation.Robust;

/// <summary>
/// A Byzantine-robust replacement for the weighted mean of a round's client updates Δ_i = y_i − x: Krum, coordinate-wise
/// median, trimmed mean, median-norm clipping, FLTrust. Wrapped around a strategy by <see cref="RobustAggregation"/>.
/// </summary>
/// <remarks>
/// Contract for implementations: pure apart from their own settings (no state carried between rounds); inputs are never
/// modified; the result does not depend on the order of the deltas given to <see cref="Aggregate"/> (clients
/// are processed in ordinal order of id); returned tensors are new, keyed and typed like the deltas, in the caller's
/// dispose scope. Inputs are assumed finite: <see cref="Validation.UpdateValidator"/> rejects NaN and ∞ on arrival.
/// </remarks>
public interface IRobustAggregator
{
    /// <summary>A short name for logs and configuration ("krum", "median", ...).</summary>
    string Name { get; }

    /// <summary>The robust combination of <paramref name="deltas"/> (≥ 1; some need more, see each class).</summary>
    /// <param name="round">The round, for aggregators that need server-side information (FLTrust's root update).</param>
    /// <param name="global">x, the round's global adapter.</param>
    /// <param name="deltas">Δ_i = y_i − x per client, with the global's layout.</param>
    /// <param name="weights">n_i per client, in the same order; aggregators that ignore weights say so.</param>
    /// <exception cref="AggregationException">Layouts differ, ids repeat, or the aggregate is undefined.</exception>
    Dictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas, IReadOnlyList<double> weights);

    /// <summary>As <see cref="Aggregate"/>, with what the rule did to each client (for the round's record, so that an
    /// operator sees who was left out or down-weighted); the default reports nothing per client, which is right for
    /// coordinate-wise rules, where no client has one weight.</summary>
    RobustCombination AggregateWithReport(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas, IReadOnlyList<double> weights) =>
        new(Aggregate(round, global, deltas, weights), null, null, null);
}

/// <summary>A robust rule's aggregate and its per-client report.</summary>
/// <param name="Tensors">The aggregate, as <see cref="IRobustAggregator.Aggregate"/> returns it.</param>
/// <param name="ClientWeights">Each client's share of the aggregate (the shares sum to 1; 0 = left out), or null for a
/// coordinate-wise rule.</param>
/// <param name="ScoreName">What <paramref name="ClientScores"/> measure (see <see cref="RoundRobust.ScoreName"/>), or null.</param>
/// <param name="ClientScores">The rule's own per-client measure, or null.</param>
public sealed record RobustCombination(Dictionary<string, Tensor> Tensors, IReadOnlyDictionary<string, double>? ClientWeights,
    string? ScoreName, IReadOnlyDictionary<string, double>? ClientScores);
