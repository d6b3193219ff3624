using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Robust;

/// <summary>
/// Norm bounding around the round's median norm: τ = factor · median_i ‖Δ_i‖, each update scaled to norm at most τ,
/// then the usual example-weighted mean.
/// </summary>
/// <remarks>
/// Sun, Kairouz, Suresh, McMahan, "Can You Really Backdoor Federated Learning?", arXiv:1911.07963 (2019), norm
/// thresholding of updates; instead of a fixed threshold, τ is taken from the round's own norms. With fewer than half
/// the clients malicious the median norm is bounded by honest norms, so no single update, however scaled, moves the
/// mean by more than p_i·τ (model-replacement attacks scale their update by n/η). Keeps the mean's statistical
/// efficiency when nobody attacks (honest updates near the median are barely touched).
/// </remarks>
public sealed class MedianNormClipping : IRobustAggregator
{
    /// <summary>Clips to <paramref name="factor"/> times the median norm (default 1).</summary>
    public MedianNormClipping(double factor = 1.0)
    {
        if (!(factor > 0) || double.IsPositiveInfinity(factor))
            throw new ArgumentOutOfRangeException(nameof(factor), factor, "the factor must be positive and finite");
        Factor = factor;
    }

    /// <summary>The multiple of the median norm used as the bound.</summary>
    public double Factor { get; }

    /// <inheritdoc/>
    public string Name => "median-norm-clipping";

    /// <inheritdoc/>
    public Dictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas, IReadOnlyList<double> weights) =>
        Combine(deltas, weights, Factor);

    /// <inheritdoc/>
    /// <remarks>Shares are the weights p_i (clipping shrinks an update, it does not re-weight it); the scores are the
    /// factors min(1, τ/‖Δ_i‖) applied.</remarks>
    public RobustCombination AggregateWithReport(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas, IReadOnlyList<double> weights)
    {
        var result = Combine(deltas, weights, Factor);
        var norms = RobustTensors.Norms(deltas);
        double bound = Factor * RobustTensors.Median(norms);
        double total = weights.Sum();
        return new RobustCombination(result,
            deltas.Select((d, i) => (d.ClientId, weights[i] / total)).ToDictionary(x => x.ClientId, x => x.Item2, StringComparer.Ordinal),
            "clip_scale",
            deltas.Select((d, i) => (d.ClientId, norms[i] > bound ? (norms[i] == 0 ? 0 : bound / norms[i]) : 1.0)).ToDictionary(x => x.ClientId, x => x.Item2, StringComparer.Ordinal));
    }

    /// <summary>Σ p_i·Δ_i·min(1, τ/‖Δ_i‖) with τ = factor·median ‖Δ_j‖ and p_i = w_i/Σ w_j.</summary>
    public static Dictionary<string, Tensor> Combine(IReadOnlyList<ClientTensors> clients, IReadOnlyList<double> weights, double factor = 1.0)
    {
        RobustTensors.Order(clients);
        RobustTensors.CheckWeights(clients, weights);
        var norms = RobustTensors.Norms(clients);
        double bound = factor * RobustTensors.Median(norms);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var clipped = new ClientTensors[clients.Count];
        for (int i = 0; i < clients.Count; i++)
        {
            double scale = norms[i] > bound ? bound / norms[i] : 1.0; // bound = 0 zeroes every non-zero update
            using var scaleScalar = scale.ToScalar();   // named, not an implicit Scalar a finalizer could free mid-call
            clipped[i] = new ClientTensors(clients[i].ClientId, clients[i].Tensors.ToDictionary(
                kv => kv.Key,
                kv => kv.Value.to(TensorMaps.WorkingType(kv.Value.dtype)).mul(scaleScalar).to(kv.Value.dtype)));
        }
        var mean = Averaging.WeightedMean(clipped, weights);
        foreach (var t in mean.Values) t.MoveToOuterDisposeScope();
        return mean;
    }
}
