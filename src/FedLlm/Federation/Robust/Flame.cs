using FedLlm.Federation.Aggregation;
using FedLlm.Privacy;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Robust;

/// <summary>
/// FLAME: keep the majority cluster of the round's updates (HDBSCAN over their cosine distances), clip every kept update
/// to the round's median norm S_t, average them, and add Gaussian noise of σ = λ·S_t to the average.
/// </summary>
/// <remarks>
/// <para>Nguyen, Rieger, Chen, Yalame, Möllering, Fereidooni, Marchal, Miettinen, Mirhoseini, Zeitouni, Koushanfar,
/// Sadeghi, Schneider, "FLAME: Taming Backdoors in Federated Learning", USENIX Security 2022, Algorithm 1:</para>
/// <list type="number">
/// <item>Filtering: c_ij = 1 − cos(Δ_i, Δ_j) over the flattened adapter updates Δ_i = y_i − x; <see cref="Hdbscan"/> with
/// min_cluster_size = ⌊n/2⌋ + 1, min_samples = 1 and allow_single_cluster; the points labelled noise are left out. With
/// min_cluster_size above n/2 no cluster can split into two clusters, so the kept set is the first single-linkage
/// component that holds a majority, the tightest group of more than half of the round's clients. A backdoored update
/// that points elsewhere than the majority's joins that component last or never.</item>
/// <item>Adaptive clipping: S_t = median of ‖Δ_i‖ over all n updates (kept or not); each kept Δ_i is scaled by
/// min(1, S_t/‖Δ_i‖), which caps a scaled-up (model-replacement) update at the honest median.</item>
/// <item>Adaptive noise: the aggregate is the unweighted mean of the L clipped kept updates, as the paper's
/// G_t = Σ W_c/L (example counts are ignored, as in FLTrust); N(0, (λ·S_t)²) is added to every coordinate. The paper's
/// λ is 0.001 for image classification and 0.01 for its word-prediction (NLP) task; 0.01 is the default here.</item>
/// </list>
/// <para>The paper clusters the local models W_i; the update Δ_i = W_i − G differs from W_i by the same G for every
/// client, and on a LoRA adapter (small updates on a shared global) the cosine of the models would be near 1 for
/// everyone, so the updates are clustered, as the clipping step already does.</para>
/// <para>The noise is drawn from <see cref="NoiseSource"/>'s generator for (round, "robust/flame"): the same run seed gives
/// the same aggregate, and a resumed run the same rounds.</para>
/// </remarks>
public sealed class Flame : IRobustAggregator
{
    /// <summary>The noise stream's name within a round.</summary>
    public const string NoiseStream = "robust/flame";

    readonly NoiseSource noise;

    /// <summary>FLAME with noise level <paramref name="noiseLambda"/> (σ = λ·S_t) drawn from <paramref name="noise"/>.</summary>
    public Flame(double noiseLambda, NoiseSource noise)
    {
        ArgumentNullException.ThrowIfNull(noise);
        if (!(noiseLambda >= 0) || double.IsPositiveInfinity(noiseLambda))
            throw new ArgumentOutOfRangeException(nameof(noiseLambda), noiseLambda, "FLAME's noise λ must be finite and ≥ 0");
        NoiseLambda = noiseLambda;
        this.noise = noise;
    }

    /// <summary>λ, the noise's standard deviation in multiples of the median norm S_t.</summary>
    public double NoiseLambda { get; }

    /// <inheritdoc/>
    public string Name => "flame";

    /// <inheritdoc/>
    public Dictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas, IReadOnlyList<double> weights) =>
        AggregateWithReport(round, global, deltas, weights).Tensors;

    /// <inheritdoc/>
    /// <remarks>Shares are 1/L for the L kept clients and 0 for those the clustering left out; the scores are the clip
    /// scales min(1, S_t/‖Δ_i‖) of the kept clients and 0 for the left-out ones.</remarks>
    public RobustCombination AggregateWithReport(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas, IReadOnlyList<double> weights)
    {
        var filter = Filter(deltas);
        var mean = ClippedMean(deltas, filter);
        var result = mean;
        if (NoiseLambda > 0)
        {
            using var generator = noise.CreateGenerator(round, NoiseStream);
            result = GaussianNoise.Add(mean, NoiseLambda * filter.MedianNorm, generator);
            foreach (var t in mean.Values) t.Dispose();
        }
        int kept = filter.Kept.Count(k => k);
        return new RobustCombination(result,
            deltas.Select((d, i) => (d.ClientId, share: filter.Kept[i] ? 1.0 / kept : 0)).ToDictionary(x => x.ClientId, x => x.share, StringComparer.Ordinal),
            "clip_scale",
            deltas.Select((d, i) => (d.ClientId, scale: filter.Kept[i] ? filter.ClipScales[i] : 0)).ToDictionary(x => x.ClientId, x => x.scale, StringComparer.Ordinal));
    }

    /// <summary>What FLAME's first two steps decided for each client, indexed like the deltas.</summary>
    /// <param name="Kept">Whether the client is in the majority cluster.</param>
    /// <param name="ClipScales">min(1, S_t/‖Δ_i‖) (0 for a zero update when S_t is 0, which changes nothing).</param>
    /// <param name="MedianNorm">S_t, the median of all ‖Δ_i‖.</param>
    public sealed record Decision(bool[] Kept, double[] ClipScales, double MedianNorm);

    /// <summary>Steps 1 and 2: the majority cluster by HDBSCAN over cosine distances, and the clip scales.</summary>
    /// <exception cref="AggregationException">No clients, repeated ids or differing layouts.</exception>
    public static Decision Filter(IReadOnlyList<ClientTensors> deltas)
    {
        var order = RobustTensors.Order(deltas);
        int n = order.Length;
        var distances = CosineDistances(deltas, order);
        var labels = Hdbscan.Cluster(distances, n / 2 + 1, allowSingleCluster: true);
        // With min_cluster_size > n/2 at most one cluster exists; take the largest label count all the same, so that the
        // rule's meaning ("the majority") does not rest on that argument.
        int majority = labels.Where(l => l != Hdbscan.Noise).GroupBy(l => l).OrderByDescending(g => g.Count()).ThenBy(g => g.Key)
            .Select(g => g.Key).DefaultIfEmpty(Hdbscan.Noise).First();
        var kept = new bool[deltas.Count];
        for (int k = 0; k < n; k++) kept[order[k]] = labels[k] != Hdbscan.Noise && labels[k] == majority;
        if (!kept.Any(x => x)) throw new AggregationException("FLAME's clustering kept no client");
        var norms = RobustTensors.Norms(deltas);
        double median = RobustTensors.Median(norms);
        var scales = norms.Select(norm => norm > median ? median / norm : 1.0).ToArray();
        return new Decision(kept, scales, median);
    }

    /// <summary>The unweighted mean of the kept clients' clipped updates, Σ_kept s_i·Δ_i / L, before noise.</summary>
    public static Dictionary<string, Tensor> ClippedMean(IReadOnlyList<ClientTensors> deltas, Decision decision)
    {
        ArgumentNullException.ThrowIfNull(decision);
        int kept = decision.Kept.Count(k => k);
        var coefficients = deltas.Select((_, i) => decision.Kept[i] ? decision.ClipScales[i] / kept : 0).ToArray();
        return Averaging.WeightedSum(deltas, coefficients);
    }

    /// <summary>1 − cos(Δ_a, Δ_b) over all keys in float64, indexed like <paramref name="order"/>; a zero update is at
    /// distance 1 from every other (cosine 0, as scikit-learn's cosine_distances), each point at 0 from itself.</summary>
    static double[,] CosineDistances(IReadOnlyList<ClientTensors> clients, int[] order)
    {
        int n = order.Length;
        var dot = new double[n, n];
        using var noGrad = torch.no_grad();
        foreach (var key in clients[order[0]].Tensors.Keys.OrderBy(k => k, StringComparer.Ordinal))
        {
            using var scope = torch.NewDisposeScope();
            var flat = torch.stack(order.Select(i => clients[i].Tensors[key].to(ScalarType.Float64).flatten()).ToArray(), 0); // (n, numel)
            var gram = flat.matmul(flat.t()).data<double>().ToArray(); // (n, n), row-major
            for (int a = 0; a < n; a++)
                for (int b = 0; b < n; b++) dot[a, b] += gram[a * n + b];
        }
        var d = new double[n, n];
        for (int a = 0; a < n; a++)
            for (int b = 0; b < a; b++)
            {
                double norms = Math.Sqrt(dot[a, a]) * Math.Sqrt(dot[b, b]);
                double cosine = norms == 0 ? 0 : (dot[a, b] + dot[b, a]) / 2 / norms; // exact symmetry, whatever rounding did
                d[a, b] = d[b, a] = Math.Clamp(1 - cosine, 0, 2);
            }
        return d;
    }
}
