using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Privacy;

/// <summary>The noisy clipped mean of one round and what adaptive clipping needs to know about it.</summary>
/// <param name="Delta">Δ̃ = (1/m)·(Σ_i clip_C(y_i − x) + N(0, (σC)²·I)), keyed and typed like the global.</param>
/// <param name="UnclippedCount">How many updates had ‖Δ_i‖ ≤ C (Andrew et al.'s bits b_i), before any noise.</param>
/// <param name="Norms">‖Δ_i‖ before clipping, in the order of the updates given.</param>
public sealed record DpRoundMean(Dictionary<string, Tensor> Delta, int UnclippedCount, IReadOnlyList<double> Norms);

/// <summary>
/// The Gaussian mechanism of DP-FedAvg on one round: clip each client's update to norm C, average with equal weights
/// over a fixed denominator m, add N(0, (σ·C/m)²) to every coordinate of the average. Pure apart from the generator.
/// </summary>
/// <remarks>
/// <para>McMahan, Ramage, Talwar, Zhang, "Learning Differentially Private Recurrent Language Models", ICLR 2018,
/// Algorithm 1 with w_k = 1 (the fixed-denominator estimator): adding or removing one client changes Σ clip(Δ_i) by at
/// most C, so noise of standard deviation σ·C on the sum, σ·C/m on the mean, is the Gaussian mechanism with noise
/// multiplier σ, which <see cref="RdpAccountant"/> accounts for. Weighting by example counts would let one client's
/// weight, and so the sensitivity, grow without bound, which is why the weights are equal. This matches Flower's
/// DifferentialPrivacyServerSideFixedClipping (noise std noise_multiplier·clipping_norm/num_sampled_clients on the
/// averaged parameters).</para>
/// <para>The sum runs in ordinal order of client id, in the working dtype of <see cref="TensorMaps"/>; the norms are
/// float64.</para>
/// </remarks>
public static class DpMean
{
    /// <summary>Clips, averages over <paramref name="denominator"/> m and adds noise of std σ·C/m.</summary>
    /// <param name="global">x, the round's global adapter.</param>
    /// <param name="updates">The clients' adapters y_i, already validated against x.</param>
    /// <param name="clippingNorm">C &gt; 0.</param>
    /// <param name="noiseMultiplier">σ ≥ 0 (0: clipping only, no privacy).</param>
    /// <param name="denominator">m ≥ 1: the expected clients per round, or |S|.</param>
    /// <param name="generator">Source of the noise.</param>
    public static DpRoundMean Compute(
        IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates,
        double clippingNorm, double noiseMultiplier, int denominator, torch.Generator generator)
    {
        ArgumentNullException.ThrowIfNull(global);
        ArgumentNullException.ThrowIfNull(updates);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(denominator);
        if (!(noiseMultiplier >= 0) || double.IsPositiveInfinity(noiseMultiplier))
            throw new ArgumentOutOfRangeException(nameof(noiseMultiplier), noiseMultiplier, "the noise multiplier must be finite and ≥ 0");

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var norms = new double[updates.Count];
        var clipped = new List<ClientTensors>(updates.Count);
        int unclipped = 0;
        for (int i = 0; i < updates.Count; i++)
        {
            using var deltaScope = torch.NewDisposeScope();
            var delta = TensorMaps.Difference(updates[i].Weights, global);
            var c = UpdateClipping.ClipToNorm(delta, clippingNorm);
            norms[i] = c.Norm;
            if (!c.Clipped) unclipped++;
            foreach (var t in c.Tensors.Values) t.MoveToOuterDisposeScope();
            clipped.Add(new ClientTensors(updates[i].ClientId, c.Tensors));
        }

        // Σ_i clip(Δ_i)/m: coefficients 1/m, not normalised by |S|, so dropped clients do not raise the others' weight.
        var mean = Averaging.WeightedSum(clipped, Enumerable.Repeat(1.0 / denominator, clipped.Count).ToArray());
        var noisy = GaussianNoise.Add(mean, noiseMultiplier * clippingNorm / denominator, generator);
        foreach (var t in noisy.Values) t.MoveToOuterDisposeScope();
        return new DpRoundMean(global.Keys.ToDictionary(k => k, k => noisy[k]), unclipped, norms);
    }

    /// <summary>The same mechanism on a secure aggregate (the survivors' equal-weight mean of already clipped updates,
    /// which the server cannot clip again): Δ̃ = (Σ_i clip_C(Δ_i) + N(0, (σC)²·I)) / m, with Σ = mean × survivors.</summary>
    /// <param name="denominator">m; null = the number of survivors.</param>
    /// <param name="global">The round's global adapter x.</param>
    /// <param name="aggregate">The secure aggregate: the survivors' mean update and their count.</param>
    /// <param name="clippingNorm">C, the bound the clients clipped to.</param>
    /// <param name="noiseMultiplier">σ.</param>
    /// <param name="generator">The noise source.</param>
    public static DpRoundMean FromSecureAggregate(IReadOnlyDictionary<string, Tensor> global, ClientUpdate aggregate,
        double clippingNorm, double noiseMultiplier, int? denominator, torch.Generator generator)
    {
        ArgumentNullException.ThrowIfNull(global);
        ArgumentNullException.ThrowIfNull(aggregate);
        double survivors = aggregate.Metrics?.GetValueOrDefault(SecureAggregate.ClientsMetric) ?? 0;
        if (!(survivors >= 1)) throw new AggregationException($"the secure aggregate carries no '{SecureAggregate.ClientsMetric}'", aggregate.ClientId);
        if (Math.Abs(SecureAggregate.WeightSum(aggregate) - survivors) > 1e-9 * survivors)
            throw new AggregationException("client-side DP clipping needs equal weights; the secure aggregate is weighted (secure_aggregation.max_weight)", aggregate.ClientId);
        int m = denominator ?? (int)survivors;
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var mean = TensorMaps.Difference(aggregate.Weights, global);
        using var factor = (survivors / m).ToScalar();   // named, not an implicit Scalar a finalizer could free mid-call
        var scaled = mean.ToDictionary(kv => kv.Key, kv => kv.Value.mul(factor));
        var noisy = GaussianNoise.Add(scaled, noiseMultiplier * clippingNorm / m, generator);
        foreach (var t in noisy.Values) t.MoveToOuterDisposeScope();
        return new DpRoundMean(global.Keys.ToDictionary(k => k, k => noisy[k]), (int)survivors, []);
    }
}
