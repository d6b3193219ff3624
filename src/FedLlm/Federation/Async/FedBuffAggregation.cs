using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Async;

/// <summary>
/// FedBuff's server step on a full buffer: x ← x + η_g · (1/K) · Σ_i s(τ_i) · Δ_i, with Δ_i = y_i − x_{v_i} the change
/// client i made to the global version v_i it started from, τ_i its staleness and K the number of buffered updates.
/// Static and pure: inputs never modified.
/// </summary>
/// <remarks>
/// Nguyen, Malik, Zhan, Yousefpour, Rabbat, Malek, Huba, "Federated Learning with Buffered Asynchronous Aggregation",
/// AISTATS 2022 (arXiv:2106.06639), Algorithm 1: the server sums the staleness-weighted deltas as they arrive and, once K
/// are in, divides by K and steps by η_g. The weights are not renormalised: stale updates shrink the step rather than
/// shifting the mean towards fresh ones, as in the paper. Deltas are uniform in 1/K, not weighted by example counts
/// (unlike FedAvg's n_i / Σ n_j). The sum runs in ordinal order of the deltas' ids (<see cref="Averaging.WeightedSum"/>),
/// so the result does not depend on the order of arrival.
/// </remarks>
public static class FedBuffAggregation
{
    /// <summary>The new global adapter, in the global's key order and dtypes.</summary>
    /// <param name="global">x, the newest global version.</param>
    /// <param name="deltas">Δ_i per buffered update, each id unique (an update id, not a client id: a fast client may
    /// appear twice in one buffer).</param>
    /// <param name="stalenessWeights">s(τ_i) per delta, in the same order.</param>
    /// <param name="serverLearningRate">η_g &gt; 0.</param>
    /// <exception cref="AggregationException">A delta's layout differs from the global's, or ids repeat.</exception>
    public static Dictionary<string, Tensor> Apply(IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas,
        IReadOnlyList<double> stalenessWeights, double serverLearningRate)
    {
        ArgumentNullException.ThrowIfNull(global);
        ArgumentNullException.ThrowIfNull(deltas);
        ArgumentNullException.ThrowIfNull(stalenessWeights);
        if (!(serverLearningRate > 0) || double.IsInfinity(serverLearningRate))
            throw new ArgumentOutOfRangeException(nameof(serverLearningRate), serverLearningRate, "η_g must be finite and positive");
        if (stalenessWeights.Count != deltas.Count) throw new ArgumentException($"{stalenessWeights.Count} weights for {deltas.Count} deltas", nameof(stalenessWeights));
        foreach (var delta in deltas) TensorMaps.CheckLayout(global, delta.Tensors, delta.ClientId, "delta");
        int k = deltas.Count;
        var sum = Averaging.WeightedSum(deltas, stalenessWeights.Select(w => w / k).ToArray());
        try
        {
            using var noGrad = torch.no_grad();
            var result = new Dictionary<string, Tensor>(global.Count);
            foreach (var (key, x) in global)
            {
                using var scope = torch.NewDisposeScope();
                var working = TensorMaps.WorkingType(x.dtype);
                result[key] = (x.to(working) + serverLearningRate * sum[key].to(working)).to(x.dtype).MoveToOuterDisposeScope();
            }
            return result;
        }
        finally
        {
            AdapterTensors.Dispose(sum);
        }
    }
}
