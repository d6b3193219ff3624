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
}
