using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.LowRank;

/// <summary>One LoRA module of an adapter: the PEFT keys of its A (r × in) and B (out × r).</summary>
public sealed record LoraModule(string KeyA, string KeyB);

/// <summary>
/// Pure arithmetic on the products ΔW = B·A of name-keyed LoRA adapters: pairing keys into modules, the weighted mean of
/// the clients' products, how far averaging A and B separately is from it, and factoring a product back into rank-r
/// factors. Tensors in, tensors out: no state, no model.
/// </summary>
/// <remarks>
/// LoRA's scale α/r multiplies every product of one layout alike, so it cancels out of each comparison and factorisation
/// here and is left out. Arithmetic runs in float64 (the products are small: out × in per module), results come back in
/// the factors' dtype.
/// </remarks>
public static class LoraProducts
{
    const string SuffixA = ".lora_A.weight", SuffixB = ".lora_B.weight";

    /// <summary>The LoRA modules of <paramref name="adapter"/> in ordinal key order.</summary>
    /// <exception cref="ArgumentException">A lora_A key without its lora_B (or the reverse), or a module whose A and B
    /// ranks differ.</exception>
    public static IReadOnlyList<LoraModule> Modules(IReadOnlyDictionary<string, Tensor> adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        var modules = new List<LoraModule>();
        foreach (var keyA in adapter.Keys.Where(k => k.EndsWith(SuffixA, StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            string keyB = keyA[..^SuffixA.Length] + SuffixB;
            if (!adapter.TryGetValue(keyB, out var b)) throw new ArgumentException($"adapter tensor '{keyA}' has no '{keyB}'", nameof(adapter));
            if (adapter[keyA].shape[0] != b.shape[1])
                throw new ArgumentException($"'{keyA}' has rank {adapter[keyA].shape[0]}, '{keyB}' rank {b.shape[1]}", nameof(adapter));
            modules.Add(new LoraModule(keyA, keyB));
        }
        foreach (var keyB in adapter.Keys.Where(k => k.EndsWith(SuffixB, StringComparison.Ordinal)))
            if (!adapter.ContainsKey(keyB[..^SuffixB.Length] + SuffixA))
                throw new ArgumentException($"adapter tensor '{keyB}' has no lora_A", nameof(adapter));
        return modules;
    }

    /// <summary>The aggregation weights p_i = n_i / Σ n_j (uniform when every count is 0).</summary>
    public static double[] ExampleWeights(IReadOnlyList<long> counts)
    {
        double total = counts.Sum(c => (double)c);
        return total > 0 ? counts.Select(c => c / total).ToArray() : counts.Select(_ => 1.0 / counts.Count).ToArray();
    }

    /// <summary>Σ_i p_i·B_i·A_i of one module, in float64, in the caller's dispose scope.</summary>
    public static Tensor WeightedProduct(LoraModule module, IReadOnlyList<IReadOnlyDictionary<string, Tensor>> adapters, IReadOnlyList<double> weights)
    {
        Check(adapters, weights);
        using var scope = NewDisposeScope();
        Tensor? sum = null;
        for (int i = 0; i < adapters.Count; i++)
        {
            var product = adapters[i][module.KeyB].to(ScalarType.Float64).matmul(adapters[i][module.KeyA].to(ScalarType.Float64)) * weights[i];
            sum = sum is null ? product : sum + product;
        }
        return sum!.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// ‖(Σ p_i B_i)(Σ p_i A_i) − Σ p_i B_i A_i‖_F / ‖Σ p_i B_i A_i‖_F over every module at once (Frobenius norms of the
    /// whole adapter): how far averaging the factors separately, as FedAvg on LoRA (and OpenFedLLM) does, lands from the
    /// average of the clients' actual weight changes. 0 when there is one client or all agree; NaN when the mean product is 0.
    /// </summary>
    public static double SeparateAveragingError(IReadOnlyList<IReadOnlyDictionary<string, Tensor>> adapters, IReadOnlyList<double> weights)
    {
        Check(adapters, weights);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        double errorSquared = 0, normSquared = 0;
        foreach (var module in Modules(adapters[0]))
        {
            var exact = WeightedProduct(module, adapters, weights);
            var meanB = Mean(adapters, weights, module.KeyB);
            var meanA = Mean(adapters, weights, module.KeyA);
            errorSquared += (meanB.matmul(meanA) - exact).square().sum().item<double>();
            normSquared += exact.square().sum().item<double>();
        }
        return normSquared > 0 ? Math.Sqrt(errorSquared / normSquared) : double.NaN;
    }

    /// <summary>
    /// Rank-<paramref name="rank"/> factors of <paramref name="product"/> (out × in) from its SVD U·S·Vᵀ, padded with zeros
    /// to <paramref name="paddedRank"/>: B = U_r·S_r (out × padded), A = V_rᵀ (padded × in). A keeps unit rows as LoRA's
    /// initial A keeps non-zero rows, so B's gradient (which is proportional to A) does not vanish in directions whose
    /// singular value is small; splitting √S between the two would leave both factors, and both gradients, near zero there.
    /// </summary>
    /// <returns>(B, A) in <paramref name="dtype"/>, in the caller's dispose scope.</returns>
    public static (Tensor B, Tensor A) Factor(Tensor product, int rank, int paddedRank, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(product);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rank);
        if (paddedRank < rank) throw new ArgumentOutOfRangeException(nameof(paddedRank), paddedRank, $"must be ≥ the rank {rank}");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (u, s, vh) = linalg.svd(product.to(ScalarType.Float64), fullMatrices: false);
        int kept = (int)Math.Min(rank, s.shape[0]);
        var b = zeros(product.shape[0], paddedRank, ScalarType.Float64);
        var a = zeros(paddedRank, product.shape[1], ScalarType.Float64);
        b[.., ..kept] = u[.., ..kept] * s[..kept].unsqueeze(0);
        a[..kept, ..] = vh[..kept, ..];
        return (b.to(dtype).MoveToOuterDisposeScope(), a.to(dtype).MoveToOuterDisposeScope());
    }

    static Tensor Mean(IReadOnlyList<IReadOnlyDictionary<string, Tensor>> adapters, IReadOnlyList<double> weights, string key)
    {
        Tensor? sum = null;
        for (int i = 0; i < adapters.Count; i++)
        {
            var term = adapters[i][key].to(ScalarType.Float64) * weights[i];
            sum = sum is null ? term : sum + term;
        }
        return sum!;
    }

    static void Check(IReadOnlyList<IReadOnlyDictionary<string, Tensor>> adapters, IReadOnlyList<double> weights)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        ArgumentNullException.ThrowIfNull(weights);
        if (adapters.Count == 0) throw new ArgumentException("no adapters", nameof(adapters));
        if (adapters.Count != weights.Count) throw new ArgumentException($"{adapters.Count} adapters but {weights.Count} weights", nameof(weights));
    }
}
