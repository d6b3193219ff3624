using System.Globalization;
using static TorchSharp.torch;

namespace FedLlm.Federation.LowRank;

/// <summary>
/// FLoRA's arithmetic and its place in the fixed adapter layout. Each module's rank-r layout is split in two: the first
/// k = min(out, in, r − f) components hold the accumulated update ΔW (frozen on the clients), the other f components
/// are the round's fresh LoRA module that a client trains (its first r_i of them). Tensors in, tensors out.
/// </summary>
/// <remarks>
/// Stacking (Wang et al., FLoRA, NeurIPS 2024): with B_stack = [p_1·B_1, …, p_n·B_n] (columns) and
/// A_stack = [A_1; …; A_n] (rows), B_stack·A_stack = Σ p_i·B_i·A_i exactly, whatever the ranks r_i, where averaging A and
/// B separately adds the cross terms p_i·p_j·B_i·A_j.
/// </remarks>
public static class FloraStacking
{
    /// <summary>Instructions key: f, the components each round's fresh module may use (absent = ⌊r/2⌋).</summary>
    public const string FreshRankKey = "flora_fresh_rank";

    /// <summary>
    /// (B_stack, A_stack) of one module: the clients' factors (B_i: out × r_i, A_i: r_i × in, any ranks) stacked along
    /// the rank axis with B_i scaled by p_i, in float64, in the caller's dispose scope.
    /// </summary>
    /// <exception cref="ArgumentException">No clients, counts that differ, or factors whose shapes do not chain.</exception>
    public static (Tensor B, Tensor A) Stack(IReadOnlyList<Tensor> b, IReadOnlyList<Tensor> a, IReadOnlyList<double> weights)
    {
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(weights);
        if (b.Count == 0) throw new ArgumentException("no client factors to stack", nameof(b));
        if (a.Count != b.Count || weights.Count != b.Count)
            throw new ArgumentException($"{b.Count} B factors, {a.Count} A factors and {weights.Count} weights", nameof(weights));
        for (int i = 0; i < b.Count; i++)
            if (b[i].shape[1] != a[i].shape[0] || b[i].shape[0] != b[0].shape[0] || a[i].shape[1] != a[0].shape[1])
                throw new ArgumentException($"client {i}: B {Shape(b[i])} and A {Shape(a[i])} do not chain with client 0's B {Shape(b[0])}, A {Shape(a[0])}");
        using var scope = NewDisposeScope();
        var scaledB = b.Select((factor, i) => factor.to(ScalarType.Float64) * weights[i]).ToArray(); // (out, r_i) each
        var stackedB = cat(scaledB, dim: 1);                                                        // (out, Σ r_i)
        var stackedA = cat(a.Select(factor => factor.to(ScalarType.Float64)).ToArray(), dim: 0);      // (Σ r_i, in)
        return (stackedB.MoveToOuterDisposeScope(), stackedA.MoveToOuterDisposeScope());
    }

    /// <summary>f of a rank-<paramref name="layoutRank"/> layout under the instructions' <paramref name="config"/> (in <paramref name="round"/>): the value of
    /// <see cref="FreshRankKey"/>, or ⌊r/2⌋ when the server sent none.</summary>
    /// <exception cref="InvalidOperationException">The value is not a whole number in 1 … r − 1.</exception>
    public static int FreshRank(IReadOnlyDictionary<string, string> config, int layoutRank, int round)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (!config.TryGetValue(FreshRankKey, out var text)) return Math.Max(1, layoutRank / 2);
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int fresh) || fresh < 1 || fresh >= layoutRank)
            throw new InvalidOperationException($"round {RoundRecord.NumberOf(round)}: instruction '{FreshRankKey}' is '{text}'; FLoRA needs a whole number in 1 … {layoutRank - 1} (the layout's rank is {layoutRank})");
        return fresh;
    }

    /// <summary>k of one module (B: out × r, A: r × in) when f components are fresh: min(out, in, r − f). With
    /// r − f ≥ min(out, in) the accumulated update always fits exactly.</summary>
    public static int ResidualRank(Tensor b, Tensor a, int freshRank) =>
        (int)Math.Min(Math.Min(b.shape[0], a.shape[1]), a.shape[0] - freshRank);

    static string Shape(Tensor t) => $"({string.Join(", ", t.shape)})";
}
