using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Robust;

/// <summary>
/// Coordinate-wise median: each coordinate of the aggregate is the median of that coordinate over the clients (the mean
/// of the two middle values for an even count, as numpy and Flower's aggregate_median). Ignores the weights.
/// </summary>
/// <remarks>
/// Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
/// ICML 2018, Option I (coordinate-wise median). With f &lt; n/2 attackers every output coordinate lies within the
/// honest clients' range for that coordinate, whatever the attackers send.
/// </remarks>
public sealed class CoordinateMedian : IRobustAggregator
{
    /// <inheritdoc/>
    public string Name => "median";

    /// <inheritdoc/>
    public Dictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas, IReadOnlyList<double> weights) =>
        Median(deltas);

    /// <summary>The coordinate-wise median of the clients' tensors.</summary>
    public static Dictionary<string, Tensor> Median(IReadOnlyList<ClientTensors> clients)
    {
        var order = RobustTensors.Order(clients);
        int n = order.Length;
        using var noGrad = torch.no_grad();
        var result = new Dictionary<string, Tensor>();
        using var two = 2.0.ToScalar();   // named, not an implicit Scalar a finalizer could free mid-call (Runtime.Scalars)
        foreach (var (key, like) in clients[order[0]].Tensors)
        {
            using var scope = torch.NewDisposeScope();
            var sorted = RobustTensors.Stack(clients, order, key).sort(0).Values; // (n, ...) ascending per coordinate
            var median = n % 2 == 1 ? sorted[n / 2] : sorted[n / 2 - 1].add(sorted[n / 2], Runtime.Scalars.One).div(two);
            result[key] = median.to(like.dtype).MoveToOuterDisposeScope();
        }
        return result;
    }
}
