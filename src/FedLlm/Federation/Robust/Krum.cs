using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Federation.Robust;

/// <summary>
/// Krum and Multi-Krum: score each update by the sum of squared distances to its n − f − 2 nearest neighbours, keep the
/// m best-scored updates (m = 1: Krum) and average them with their weights.
/// </summary>
/// <remarks>
/// <para>Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries: Byzantine Tolerant Gradient
/// Descent", NeurIPS 2017: Krum (section 4) and Multi-Krum (section 5), for f Byzantine clients out of n with
/// 2f + 2 &lt; n, which this class requires. The selected updates are averaged with the given weights (example counts
/// when used through <see cref="RobustAggregation"/>), as Flower's aggregate_krum; the paper's uniform average is the
/// case of equal weights.</para>
/// <para>Distances are float64 sums over all tensors. Equal scores are broken by ordinal client id, so the choice does
/// not depend on the order updates arrived in.</para>
/// </remarks>
public sealed class Krum : IRobustAggregator
{
    /// <summary>Tolerates <paramref name="byzantineClients"/> f attackers; keeps <paramref name="selected"/> m updates
    /// (1 = Krum, more = Multi-Krum).</summary>
    public Krum(int byzantineClients, int selected = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byzantineClients);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(selected);
        ByzantineClients = byzantineClients;
        Selected = selected;
    }

    /// <summary>f.</summary>
    public int ByzantineClients { get; }

    /// <summary>m.</summary>
    public int Selected { get; }

    /// <inheritdoc/>
    public string Name => Selected == 1 ? "krum" : "multi-krum";

    /// <inheritdoc/>
    public Dictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas, IReadOnlyList<double> weights) =>
        Combine(deltas, weights, ByzantineClients, Selected);

    /// <inheritdoc/>
    /// <remarks>Kept clients' shares are their weights over the kept clients' total (Krum: 1 for the one kept); the
    /// scores are Krum's, lower = more central.</remarks>
    public RobustCombination AggregateWithReport(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas, IReadOnlyList<double> weights)
    {
        RobustTensors.CheckWeights(deltas, weights);
        var scores = Scores(deltas, ByzantineClients);
        var chosen = SelectByScores(deltas, scores, ByzantineClients, Selected);
        double kept = chosen.Sum(i => weights[i]);
        var shares = deltas.Select((d, i) => (d.ClientId, share: !chosen.Contains(i) ? 0.0 : chosen.Length == 1 ? 1.0 : weights[i] / kept));
        return new RobustCombination(
            MeanOf(deltas, weights, chosen),
            shares.ToDictionary(x => x.ClientId, x => x.share, StringComparer.Ordinal),
            "krum_score",
            deltas.Select((d, i) => (d.ClientId, scores[i])).ToDictionary(x => x.ClientId, x => x.Item2, StringComparer.Ordinal));
    }

    /// <summary>Krum's scores: for each client (indexed like <paramref name="clients"/>), the sum of its n − f − 2
    /// smallest squared distances to the other clients.</summary>
    /// <exception cref="ArgumentException">n ≤ 2f + 2.</exception>
    public static double[] Scores(IReadOnlyList<ClientTensors> clients, int byzantineClients)
    {
        var order = RobustTensors.Order(clients);
        int n = order.Length;
        if (n <= 2 * byzantineClients + 2)
            throw new ArgumentException($"Krum with f = {byzantineClients} needs more than {2 * byzantineClients + 2} clients, got {n}", nameof(clients));
        var d = RobustTensors.SquaredDistances(clients, order);
        int neighbours = n - byzantineClients - 2;
        var scores = new double[n];
        for (int a = 0; a < n; a++)
        {
            var others = Enumerable.Range(0, n).Where(b => b != a).Select(b => d[a, b]).OrderBy(v => v);
            scores[order[a]] = others.Take(neighbours).Sum();
        }
        return scores;
    }

    /// <summary>Indices (into <paramref name="clients"/>) of the <paramref name="selected"/> best-scored clients, best
    /// first; ties go to the smaller client id.</summary>
    public static int[] Select(IReadOnlyList<ClientTensors> clients, int byzantineClients, int selected = 1) =>
        SelectByScores(clients, Scores(clients, byzantineClients), byzantineClients, selected);

    static int[] SelectByScores(IReadOnlyList<ClientTensors> clients, double[] scores, int byzantineClients, int selected)
    {
        int n = clients.Count;
        if (selected > n - byzantineClients)
            throw new ArgumentException($"Multi-Krum can keep at most n − f = {n - byzantineClients} updates, asked for {selected}", nameof(selected));
        return Enumerable.Range(0, n)
            .OrderBy(i => scores[i])
            .ThenBy(i => clients[i].ClientId, StringComparer.Ordinal)
            .Take(selected)
            .ToArray();
    }

    /// <summary>The weighted mean of the <paramref name="selected"/> clients Multi-Krum keeps.</summary>
    public static Dictionary<string, Tensor> Combine(
        IReadOnlyList<ClientTensors> clients, IReadOnlyList<double> weights, int byzantineClients, int selected = 1)
    {
        RobustTensors.CheckWeights(clients, weights);
        return MeanOf(clients, weights, Select(clients, byzantineClients, selected));
    }

    static Dictionary<string, Tensor> MeanOf(IReadOnlyList<ClientTensors> clients, IReadOnlyList<double> weights, int[] chosen)
    {
        if (chosen.Length == 1) return TensorMaps.Clone(clients[chosen[0]].Tensors); // one update: its weight does not matter
        return Averaging.WeightedMean(chosen.Select(i => clients[i]).ToArray(), chosen.Select(i => weights[i]).ToArray());
    }
}
