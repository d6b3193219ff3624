using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.SecureAggregation;

/// <summary>
/// A client's update as a secure-aggregation input and the survivors' sum back as a mean update: the coordinates of
/// w_i·clip_r(y_i − x) (keys in ordinal order, each tensor flattened) quantised to Z_{2^32}, followed by the quantised
/// weight w_i, so that one secure sum gives both Σ w_i·Δ_i and Σ w_i.
/// </summary>
/// <remarks>
/// <para>Weights: w_i = 1 (equal), or min(1, n_i/W) quantised to a multiple of 1/(2^b − 1) and used in that quantised
/// form on both sides (Flower's SecAgg+ does the same), so the division by Σ w_i is exact apart from Δ's quantisation.</para>
/// <para>Error (per coordinate of the mean): at most n·r/((2^b − 1)·Σ w_i), from <see cref="FixedPointQuantiser"/>'s
/// bound summed over n survivors; with equal weights, r/(2^b − 1). Clipping to [−r, r] is not counted in it.</para>
/// </remarks>
public static class SecureInput
{
    /// <summary>Ring elements of an input for <paramref name="global"/>: its coordinates plus the weight.</summary>
    public static int Length(IReadOnlyDictionary<string, Tensor> global) => checked((int)global.Values.Sum(t => t.NumberOfElements) + 1);

    /// <summary>The weight w_i the input of a client with <paramref name="exampleCount"/> examples carries, quantised.</summary>
    public static double Weight(long exampleCount, double? maxWeight, FixedPointQuantiser quantiser) =>
        QuantisedWeight(exampleCount, maxWeight, quantiser) / (double)quantiser.Levels;

    /// <summary>The client's input: quantised w_i·clip_r(y_i − x), then quantised w_i.</summary>
    public static uint[] Encode(IReadOnlyDictionary<string, Tensor> weights, IReadOnlyDictionary<string, Tensor> global, long exampleCount,
        double? maxWeight, FixedPointQuantiser quantiser)
    {
        if (Aggregation.TensorMaps.FindMismatch(global, weights) is { } mismatch)
            throw new ArgumentException($"secure-aggregation input: tensor '{mismatch.Key}' {mismatch.Problem}", nameof(weights));
        double w = Weight(exampleCount, maxWeight, quantiser);
        var input = new uint[Length(global)];
        int offset = 0;
        using var noGrad = no_grad();
        foreach (var key in global.Keys.Order(StringComparer.Ordinal))
        {
            using var scope = NewDisposeScope();
            var delta = (weights[key].to(ScalarType.Float64) - global[key].to(ScalarType.Float64)).cpu().contiguous().flatten();
            foreach (double d in delta.data<double>())
            {
                if (!double.IsFinite(d)) throw new ArgumentException($"secure-aggregation input: tensor '{key}' has a non-finite value", nameof(weights));
                input[offset++] = quantiser.Quantise(w * Math.Clamp(d, -quantiser.Range, quantiser.Range));
            }
        }
        input[offset] = QuantisedWeight(exampleCount, maxWeight, quantiser);
        return input;
    }

    /// <summary>The survivors' weighted mean Δ = Σ w_i·Δ_i / Σ w_i from their secure <paramref name="sum"/>, keyed and typed
    /// like <paramref name="global"/>, and Σ w_i.</summary>
    public static (Dictionary<string, Tensor> Delta, double WeightSum) DecodeMean(uint[] sum, int survivors, IReadOnlyDictionary<string, Tensor> global,
        FixedPointQuantiser quantiser)
    {
        if (sum.Length != Length(global)) throw new ArgumentException($"a secure sum of {sum.Length} elements for an input of {Length(global)}", nameof(sum));
        double weightSum = sum[^1] / (double)quantiser.Levels;
        if (!(weightSum > 0)) throw new SecureAggregationException("the secure sum's weights add up to zero");
        var delta = new Dictionary<string, Tensor>(global.Count);
        int offset = 0;
        foreach (var key in global.Keys.Order(StringComparer.Ordinal))
        {
            var x = global[key];
            var values = new double[x.NumberOfElements];
            for (int i = 0; i < values.Length; i++) values[i] = quantiser.DecodeSum(sum[offset++], survivors) / weightSum;
            delta[key] = tensor(values).reshape(x.shape).to(x.dtype, x.device).DetachFromDisposeScope();
        }
        return (delta, weightSum);
    }

    static uint QuantisedWeight(long exampleCount, double? maxWeight, FixedPointQuantiser quantiser)
    {
        if (maxWeight is not { } cap) return quantiser.Levels;
        double ratio = Math.Min(1, Math.Max(exampleCount, 0) / cap);
        return (uint)Math.Max(1, Math.Round(ratio * quantiser.Levels)); // ≥ 1: a client that took part carries some weight
    }
}
