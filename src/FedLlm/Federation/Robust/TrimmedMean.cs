using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Robust;

/// <summary>
/// Coordinate-wise trimmed mean: per coordinate, drop the k = ⌊β·n⌋ largest and k smallest client values and average
/// the remaining n − 2k. Ignores the weights, as the paper and Flower's aggregate_trimmed_avg.
/// </summary>
/// <remarks>
/// Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
/// ICML 2018, Option II (coordinate-wise trimmed mean), with β ≥ f/n for f attackers; Flower's FedTrimmedAvg defaults to
/// β = 0.2, and so does this class. With f ≤ k attackers every output coordinate lies within the honest range.
/// </remarks>
public sealed class TrimmedMean : IRobustAggregator
{
    /// <summary>Trims β = <paramref name="trimFraction"/> of the clients at each end; 0 ≤ β &lt; 0.5.</summary>
    public TrimmedMean(double trimFraction = 0.2)
    {
        if (!(trimFraction >= 0 && trimFraction < 0.5))
            throw new ArgumentOutOfRangeException(nameof(trimFraction), trimFraction, "β must be in [0, 0.5)");
        TrimFraction = trimFraction;
    }

    /// <summary>β.</summary>
    public double TrimFraction { get; }

    /// <inheritdoc/>
    public string Name => "trimmed-mean";

    /// <inheritdoc/>
    public Dictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas, IReadOnlyList<double> weights) =>
        Mean(deltas, TrimFraction);

    /// <summary>The coordinate-wise β-trimmed mean of the clients' tensors.</summary>
    public static Dictionary<string, Tensor> Mean(IReadOnlyList<ClientTensors> clients, double trimFraction)
    {
        if (!(trimFraction >= 0 && trimFraction < 0.5))
            throw new ArgumentOutOfRangeException(nameof(trimFraction), trimFraction, "β must be in [0, 0.5)");
        var order = RobustTensors.Order(clients);
        int n = order.Length, k = (int)Math.Floor(trimFraction * n);
        using var noGrad = torch.no_grad();
        var result = new Dictionary<string, Tensor>();
        foreach (var (key, like) in clients[order[0]].Tensors)
        {
            using var scope = torch.NewDisposeScope();
            var sorted = RobustTensors.Stack(clients, order, key).sort(0).Values; // (n, ...) ascending per coordinate
            var kept = sorted.narrow(0, k, n - 2 * k);                              // (n − 2k, ...)
            result[key] = kept.mean(new long[] { 0 }).to(like.dtype).MoveToOuterDisposeScope();
        }
        return result;
    }
}
