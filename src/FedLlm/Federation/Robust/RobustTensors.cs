using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Robust;

/// <summary>Shared steps of the robust aggregators: a fixed client order, per-key stacks, norms and distances.</summary>
internal static class RobustTensors
{
    /// <summary>Indices of <paramref name="clients"/> in ordinal order of id, after checking there is at least one,
    /// that ids are distinct and that every client has the first one's layout.</summary>
    public static int[] Order(IReadOnlyList<ClientTensors> clients)
    {
        ArgumentNullException.ThrowIfNull(clients);
        if (clients.Count == 0) throw new ArgumentException("nothing to aggregate: no clients", nameof(clients));
        var order = Enumerable.Range(0, clients.Count).OrderBy(i => clients[i].ClientId, StringComparer.Ordinal).ToArray();
        for (int k = 1; k < order.Length; k++)
            if (clients[order[k]].ClientId == clients[order[k - 1]].ClientId)
                throw new AggregationException($"client '{clients[order[k]].ClientId}' appears more than once", clients[order[k]].ClientId);
        var layout = clients[order[0]];
        foreach (int i in order)
            if (TensorMaps.FindMismatch(layout.Tensors, clients[i].Tensors) is { } mismatch)
                throw new AggregationException(
                    $"client '{clients[i].ClientId}': tensor '{mismatch.Key}' {mismatch.Problem} (compared with client '{layout.ClientId}')",
                    clients[i].ClientId, mismatch.Key);
        return order;
    }

    /// <summary>The clients' tensors under <paramref name="key"/> in <paramref name="order"/>, stacked on a new dim 0,
    /// in the working dtype: shape [n, ...].</summary>
    public static Tensor Stack(IReadOnlyList<ClientTensors> clients, int[] order, string key)
    {
        var working = TensorMaps.WorkingType(clients[order[0]].Tensors[key].dtype);
        return torch.stack(order.Select(i => clients[i].Tensors[key].to(working)).ToArray(), 0);
    }

    /// <summary>‖Δ‖₂ of each client over all keys, float64, indexed like <paramref name="clients"/>.</summary>
    public static double[] Norms(IReadOnlyList<ClientTensors> clients) =>
        clients.Select(c => Privacy.UpdateClipping.L2Norm(c.Tensors)).ToArray();

    /// <summary>‖Δ_i − Δ_j‖² over all keys in float64, indexed like <paramref name="order"/> (position k is client
    /// order[k]).</summary>
    public static double[,] SquaredDistances(IReadOnlyList<ClientTensors> clients, int[] order)
    {
        int n = order.Length;
        var d = new double[n, n];
        using var noGrad = torch.no_grad();
        foreach (var key in clients[order[0]].Tensors.Keys.OrderBy(k => k, StringComparer.Ordinal))
        {
            using var scope = torch.NewDisposeScope();
            var flat = torch.stack(order.Select(i => clients[i].Tensors[key].to(ScalarType.Float64).flatten()).ToArray(), 0); // (n, numel)
            for (int a = 0; a < n; a++)
            {
                var row = (flat - flat[a]).square().sum(1).data<double>().ToArray(); // (n,)
                for (int b = 0; b < n; b++) d[a, b] += row[b];
            }
        }
        for (int a = 0; a < n; a++)
            for (int b = 0; b < a; b++)
                d[a, b] = d[b, a] = (d[a, b] + d[b, a]) / 2; // exact symmetry, whatever rounding did
        return d;
    }

    /// <summary>The median of <paramref name="values"/>, the mean of the two middle ones for an even count (numpy's).</summary>
    public static double Median(IReadOnlyList<double> values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    /// <summary>Checks that <paramref name="weights"/> has one finite, non-negative entry per client.</summary>
    public static void CheckWeights(IReadOnlyList<ClientTensors> clients, IReadOnlyList<double> weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Count != clients.Count) throw new ArgumentException($"{weights.Count} weights for {clients.Count} clients", nameof(weights));
        for (int i = 0; i < weights.Count; i++)
            if (!(weights[i] >= 0) || double.IsPositiveInfinity(weights[i]))
                throw new AggregationException($"client '{clients[i].ClientId}' has weight {weights[i]}; weights must be finite and ≥ 0", clients[i].ClientId);
    }
}
