using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Aggregation;

/// <summary>
/// Weighted sums and means of name-keyed client tensors: the arithmetic of FedAvg, of the pseudo-gradient Δ of FedAvgM
/// and FedOpt, and of SCAFFOLD's control-variate step. Static and pure: no state, no I/O, inputs never modified.
/// </summary>
/// <remarks>
/// <para>Summation runs in ordinal order of client id, whatever order the list has, so the result is the same bit for
/// bit however updates arrive (over a network they arrive in any order, and a resumed run must match an uninterrupted
/// one). For the same reason the normalising sum of the weights is taken in that order too.</para>
/// <para>Precision follows <see cref="TensorMaps"/>: float32 arithmetic for float32 adapters, results in the inputs'
/// dtype. Each key is computed in its own dispose scope, so peak memory is one key's temporaries, not the adapter's.</para>
/// <para>Layout: every client must have exactly the keys, shapes and dtypes of the first client in the list (or of
/// <c>reference</c> where one is given); the result follows that map's key order.</para>
/// </remarks>
public static class Averaging
{
    /// <summary>Σ_i a_i·t_i with the coefficients as given (not normalised); SCAFFOLD's Σ Δc_i / N uses a_i = 1/N.</summary>
    /// <exception cref="AggregationException">Duplicate client ids, or a client's layout differs from the first's.</exception>
    public static Dictionary<string, Tensor> WeightedSum(IReadOnlyList<ClientTensors> clients, IReadOnlyList<double> coefficients)
    {
        var order = SortedOrder(clients, coefficients);
        foreach (int i in order)
            if (!double.IsFinite(coefficients[i]))
                throw new AggregationException($"client '{clients[i].ClientId}' has coefficient {coefficients[i]}", clients[i].ClientId);
        return Combine(clients, order, order.Select(i => coefficients[i]).ToArray(), reference: null);
    }

    /// <summary>Σ_i p_i·t_i with p_i = w_i / Σ_j w_j: FedAvg's x ← Σ p_i y_i when w_i = n_i (McMahan et al., 2017).</summary>
    /// <exception cref="AggregationException">A weight is negative or not finite, all are zero, ids repeat, or layouts differ.</exception>
    public static Dictionary<string, Tensor> WeightedMean(IReadOnlyList<ClientTensors> clients, IReadOnlyList<double> weights)
    {
        var order = SortedOrder(clients, weights);
        return Combine(clients, order, Normalized(clients, weights, order), reference: null);
    }

    /// <summary>The unweighted mean (1/|S|)·Σ t_i.</summary>
    public static Dictionary<string, Tensor> Mean(IReadOnlyList<ClientTensors> clients) =>
        WeightedMean(clients, Enumerable.Repeat(1.0, clients.Count).ToArray());

    /// <summary>
    /// The pseudo-gradient Δ = Σ_i p_i·(t_i − x) with p_i = w_i / Σ_j w_j and x = <paramref name="reference"/>, computed
    /// per client difference as OpenFedLLM does rather than as mean − x, and without materialising the |S| differences.
    /// </summary>
    /// <exception cref="AggregationException">As <see cref="WeightedMean"/>; layouts are checked against the reference.</exception>
    public static Dictionary<string, Tensor> WeightedMeanOfDifferences(
        IReadOnlyList<ClientTensors> clients, IReadOnlyList<double> weights, IReadOnlyDictionary<string, Tensor> reference)
    {
        ArgumentNullException.ThrowIfNull(reference);
        var order = SortedOrder(clients, weights);
        return Combine(clients, order, Normalized(clients, weights, order), reference);
    }

    /// <summary>The example counts n_i of the updates as weights, in the same order.</summary>
    /// <exception cref="AggregationException">A count is negative.</exception>
    public static double[] ExampleCounts(IReadOnlyList<ClientUpdate> updates)
    {
        ArgumentNullException.ThrowIfNull(updates);
        return updates.Select(u => u.ExampleCount >= 0
            ? (double)u.ExampleCount
            : throw new AggregationException($"client '{u.ClientId}' reported {u.ExampleCount} examples; counts must be ≥ 0", u.ClientId))
            .ToArray();
    }

    /// <summary>Indices of <paramref name="clients"/> in ordinal order of client id; rejects empty input and repeated ids.</summary>
    static int[] SortedOrder(IReadOnlyList<ClientTensors> clients, IReadOnlyList<double> weights)
    {
        ArgumentNullException.ThrowIfNull(clients);
        ArgumentNullException.ThrowIfNull(weights);
        if (clients.Count == 0) throw new ArgumentException("nothing to aggregate: no clients", nameof(clients));
        if (weights.Count != clients.Count)
            throw new ArgumentException($"{weights.Count} weights for {clients.Count} clients", nameof(weights));
        var order = Enumerable.Range(0, clients.Count)
            .OrderBy(i => clients[i].ClientId, StringComparer.Ordinal)
            .ToArray();
        for (int k = 1; k < order.Length; k++)
            if (clients[order[k]].ClientId == clients[order[k - 1]].ClientId)
                throw new AggregationException($"client '{clients[order[k]].ClientId}' appears more than once", clients[order[k]].ClientId);
        return order;
    }

    /// <summary>p_i = w_i / Σ w_j in <paramref name="order"/>, the sum taken in that order.</summary>
    static double[] Normalized(IReadOnlyList<ClientTensors> clients, IReadOnlyList<double> weights, int[] order)
    {
        double total = 0;
        foreach (int i in order)
        {
            if (!(weights[i] >= 0) || double.IsInfinity(weights[i]))
                throw new AggregationException(
                    $"client '{clients[i].ClientId}' has weight {weights[i]}; weights must be finite and ≥ 0", clients[i].ClientId);
            total += weights[i];
        }
        if (!(total > 0))
            throw new AggregationException("all client weights (example counts) are zero, so the weighted mean is undefined");
        return order.Select(i => weights[i] / total).ToArray();
    }

    /// <summary>Σ_k coefficient_k·(t_{order[k]} − x), with x = 0 when <paramref name="reference"/> is null.</summary>
    static Dictionary<string, Tensor> Combine(
        IReadOnlyList<ClientTensors> clients, int[] order, double[] coefficients, IReadOnlyDictionary<string, Tensor>? reference)
    {
        var layout = reference ?? clients[0].Tensors;
        foreach (int i in order)
        {
            if (TensorMaps.FindMismatch(layout, clients[i].Tensors) is { } mismatch)
                throw new AggregationException(
                    reference is null
                        ? $"client '{clients[i].ClientId}': tensor '{mismatch.Key}' {mismatch.Problem} (compared with client '{clients[0].ClientId}')"
                        : $"client '{clients[i].ClientId}': tensor '{mismatch.Key}' {mismatch.Problem} (compared with the global adapter)",
                    clients[i].ClientId, mismatch.Key);
        }

        using var noGrad = torch.no_grad(); // clients may hand in live parameters; no graph must grow from them
        // Every scalar handed to libtorch is named for the whole combination: an implicit one (a double converted to a
        // Scalar, or the alpha = 1 TorchSharp makes inside `a + b`) can be freed by its finalizer while the native call
        // still reads it, and a server's other threads allocate enough to make collections frequent (see AdamW.Step).
        var alphas = coefficients.Select(c => c.ToScalar()).ToArray();
        try
        {
            var result = new Dictionary<string, Tensor>(layout.Count);
            foreach (var (key, like) in layout)
            {
                using var scope = torch.NewDisposeScope();
                var working = TensorMaps.WorkingType(like.dtype);
                var baseline = reference is null ? null : reference[key].to(working);
                var sum = torch.zeros(like.shape, working, like.device);
                for (int k = 0; k < order.Length; k++)
                {
                    var value = clients[order[k]].Tensors[key].to(working);
                    sum.add_(baseline is null ? value : value - baseline, alphas[k]);
                }
                result[key] = sum.to(like.dtype).MoveToOuterDisposeScope();
            }
            return result;
        }
        finally
        {
            foreach (var alpha in alphas) alpha.Dispose();
        }
    }
}
