using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Robust;

/// <summary>
/// FLTrust: the server computes its own update Δ₀ on a small clean root set; each client gets the trust score
/// TS_i = ReLU(cos(Δ_i, Δ₀)), its update is rescaled to ‖Δ₀‖, and the aggregate is Σ TS_i·(‖Δ₀‖/‖Δ_i‖)·Δ_i / Σ TS_j.
/// </summary>
/// <remarks>
/// <para>Cao, Fang, Liu, Gong, "FLTrust: Byzantine-robust Federated Learning via Trust Bootstrapping", NDSS 2021,
/// Algorithm 2 (aggregation rule, equation 4). Ignores example counts, as the paper does. When every score is 0 (no
/// client points the server's way) the aggregate is zero, i.e. the global model stays as it is.</para>
/// <para>The server update comes from a callback (round, global) → Δ₀ so that the root-set training can be wired in
/// later (it needs the local trainer and a root data set); tensors it creates are freed after the round, tensors it
/// returns from elsewhere are left alone.</para>
/// </remarks>
public sealed class FlTrust : IRobustAggregator
{
    readonly Func<int, IReadOnlyDictionary<string, Tensor>, IReadOnlyDictionary<string, Tensor>> serverUpdate;

    /// <summary>Uses <paramref name="serverUpdate"/>(round, global) as Δ₀, the server's update on its root set.</summary>
    public FlTrust(Func<int, IReadOnlyDictionary<string, Tensor>, IReadOnlyDictionary<string, Tensor>> serverUpdate)
    {
        ArgumentNullException.ThrowIfNull(serverUpdate);
        this.serverUpdate = serverUpdate;
    }

    /// <inheritdoc/>
    public string Name => "fltrust";

    /// <inheritdoc/>
    public Dictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas, IReadOnlyList<double> weights) =>
        AggregateWithReport(round, global, deltas, weights).Tensors;

    /// <inheritdoc/>
    /// <remarks>Shares are TS_i / Σ TS_j (all 0 when no client is trusted); the scores are the trust scores TS_i.</remarks>
    public RobustCombination AggregateWithReport(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientTensors> deltas, IReadOnlyList<double> weights)
    {
        using var scope = torch.NewDisposeScope();
        var root = serverUpdate(round, global) ?? throw new InvalidOperationException("FLTrust's server update callback returned null");
        var trust = TrustScores(deltas, root);
        var result = Combine(deltas, root, trust);
        foreach (var t in result.Values) t.MoveToOuterDisposeScope();
        double total = RobustTensors.Order(deltas).Sum(i => trust[i]);
        return new RobustCombination(result,
            deltas.Select((d, i) => (d.ClientId, share: total == 0 ? 0 : trust[i] / total)).ToDictionary(x => x.ClientId, x => x.share, StringComparer.Ordinal),
            "trust",
            deltas.Select((d, i) => (d.ClientId, trust[i])).ToDictionary(x => x.ClientId, x => x.Item2, StringComparer.Ordinal));
    }

    /// <summary>The trust scores ReLU(cos(Δ_i, Δ₀)), indexed like <paramref name="clients"/> (0 for a zero update).</summary>
    public static double[] TrustScores(IReadOnlyList<ClientTensors> clients, IReadOnlyDictionary<string, Tensor> serverUpdate)
    {
        var order = RobustTensors.Order(clients);
        ArgumentNullException.ThrowIfNull(serverUpdate);
        TensorMaps.CheckLayout(clients[order[0]].Tensors, serverUpdate, "server", "root update");
        double rootNorm = Privacy.UpdateClipping.L2Norm(serverUpdate);
        using var noGrad = torch.no_grad();
        var scores = new double[clients.Count];
        for (int i = 0; i < clients.Count; i++)
        {
            double dot = 0;
            foreach (var key in serverUpdate.Keys.OrderBy(k => k, StringComparer.Ordinal))
            {
                using var scope = torch.NewDisposeScope();
                dot += (clients[i].Tensors[key].to(ScalarType.Float64) * serverUpdate[key].to(ScalarType.Float64)).sum().item<double>();
            }
            double norm = Privacy.UpdateClipping.L2Norm(clients[i].Tensors);
            scores[i] = norm == 0 || rootNorm == 0 ? 0 : Math.Max(0, dot / (norm * rootNorm));
        }
        return scores;
    }

    /// <summary>Σ TS_i·(‖Δ₀‖/‖Δ_i‖)·Δ_i / Σ TS_j, or zeros when every score is 0.</summary>
    public static Dictionary<string, Tensor> Combine(IReadOnlyList<ClientTensors> clients, IReadOnlyDictionary<string, Tensor> serverUpdate) =>
        Combine(clients, serverUpdate, TrustScores(clients, serverUpdate));

    static Dictionary<string, Tensor> Combine(IReadOnlyList<ClientTensors> clients, IReadOnlyDictionary<string, Tensor> serverUpdate, double[] scores)
    {
        double total = RobustTensors.Order(clients).Sum(i => scores[i]); // summed in id order
        if (total == 0)
        {
            using var noGrad = torch.no_grad();
            return clients[0].Tensors.ToDictionary(kv => kv.Key, kv => torch.zeros_like(kv.Value));
        }
        double rootNorm = Privacy.UpdateClipping.L2Norm(serverUpdate);
        var coefficients = clients.Select((c, i) => scores[i] == 0 ? 0 : scores[i] / total * rootNorm / Privacy.UpdateClipping.L2Norm(c.Tensors)).ToArray();
        return Averaging.WeightedSum(clients, coefficients);
    }
}
