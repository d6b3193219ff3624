using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Strategies;
using FedLlm.Privacy;
using TorchSharp;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Privacy;

public class DpDecoratorTests
{
    // Round 1 of the shared script: x = X0, deltas Δ_a = [0.2, 1, 0, 1, −1] (‖·‖ = √3.04 ≈ 1.7436),
    // Δ_b = [−0.2, −0.6, −0.5, −1, 1] (√2.65 ≈ 1.6279), Δ_c = [1, 2, 0.5, 0.5, 0] (√5.5 ≈ 2.3452).
    static double[] Delta(ScriptedClient c) => c.Weights.Zip(X0, (y, x) => y - x).ToArray();
    static double Norm(double[] v) => Math.Sqrt(v.Sum(t => t * t));
    static double[] Clip(double[] v, double c) { double n = Norm(v); return n > c ? v.Select(t => t * c / n).ToArray() : v; }

    static List<ClientUpdate> RoundOne() => Rounds[0].Select(c => Update(c)).ToList();

    [Fact]
    public void Clip_to_norm_scales_onto_the_sphere_and_leaves_small_updates_alone()
    {
        var update = Adapter(new[] { 3.0, 0, 0, 4, 0 }); // ‖·‖ = 5 across both tensors
        var clipped = UpdateClipping.ClipToNorm(update, 2.5);
        AssertClose(new[] { 1.5, 0, 0, 2, 0 }, Flat(clipped.Tensors), 1e-6, "clipped");
        Assert.Equal(5, clipped.Norm, 12);
        Assert.True(clipped.Clipped);
        var untouched = UpdateClipping.ClipToNorm(update, 10);
        Assert.Equal(new[] { 3.0, 0, 0, 4, 0 }, Flat(untouched.Tensors));
        Assert.False(untouched.Clipped);
    }

    [Fact]
    public void Fixed_clipping_without_noise_is_the_equal_weight_mean_of_clipped_updates_over_m()
    {
        // Prepare: C = 1.7 clips a (1.74) and c (2.35) but not b (1.63); m = 4 expected clients, 3 arrived.
        var options = new FixedClippingOptions { NoiseMultiplier = 0, ClippingNorm = 1.7, ClientsPerRound = 4 };
        using var dp = new ServerSideFixedClipping(new FedAvg(), options, NoiseSource.FromRunSeed(1));

        // Execute
        var next = Flat(dp.Aggregate(0, Adapter(X0), RoundOne()));

        // Assert: x + Σ clip(Δ_i)/4. Example weights 10/30/60 or a /3 denominator would give other numbers.
        var sum = Rounds[0].Select(c => Clip(Delta(c), 1.7)).Aggregate((u, v) => u.Zip(v, (p, q) => p + q).ToArray());
        var expected = X0.Zip(sum, (x, s) => x + s / 4).ToArray();
        AssertClose(expected, next, 1e-6, "DP-FedAvg without noise");
        Assert.Equal(Norm(Delta(Rounds[0][2])), dp.LastNorms["c"], 6);
    }

    [Fact]
    public void Fixed_clipping_noise_has_std_sigma_c_over_m_on_the_mean()
    {
        // Prepare: one 40000-coordinate tensor; every client sends the global back (Δ = 0), so the output minus x is
        // pure noise. σ = 2, C = 0.5, m = 5 → std 0.2 (σ·C would be 1, σ·C/m² 0.04).
        var global = new Dictionary<string, Tensor> { ["w"] = torch.zeros(200, 200) };
        var updates = Enumerable.Range(0, 5).Select(i => new ClientUpdate($"c{i}", new Dictionary<string, Tensor> { ["w"] = torch.zeros(200, 200) }, 10 * (i + 1))).ToList();
        var options = new FixedClippingOptions { NoiseMultiplier = 2, ClippingNorm = 0.5 };
        using var dp = new ServerSideFixedClipping(new FedAvg(), options, NoiseSource.FromRunSeed(7));

        var noise = Values(dp.Aggregate(3, global, updates)["w"]);

        double mean = noise.Average(), std = Math.Sqrt(noise.Select(v => (v - mean) * (v - mean)).Sum() / (noise.Length - 1));
        Assert.InRange(std, 0.2 * 0.98, 0.2 * 1.02);
        Assert.InRange(mean, -0.005, 0.005);
    }

    [Fact]
    public void Run_seeded_noise_is_reproducible_per_round_and_cryptographic_noise_is_not()
    {
        var options = new FixedClippingOptions { NoiseMultiplier = 1, ClippingNorm = 1 };
        double[] RunOnce(NoiseSource source, int round)
        {
            using var dp = new ServerSideFixedClipping(new FedAvg(), options, source);
            return Flat(dp.Aggregate(round, Adapter(X0), RoundOne()));
        }

        Assert.Equal(RunOnce(NoiseSource.FromRunSeed(42), 2), RunOnce(NoiseSource.FromRunSeed(42), 2));
        Assert.NotEqual(RunOnce(NoiseSource.FromRunSeed(42), 2), RunOnce(NoiseSource.FromRunSeed(42), 3));
        Assert.NotEqual(RunOnce(NoiseSource.FromRunSeed(42), 2), RunOnce(NoiseSource.FromRunSeed(43), 2));
        Assert.NotEqual(RunOnce(NoiseSource.Cryptographic(), 2), RunOnce(NoiseSource.Cryptographic(), 2));
        Assert.Equal(NoiseSeeding.Cryptographic, NoiseSource.Create(NoiseSeeding.Cryptographic, 42).Seeding);
    }

    [Fact]
    public void Around_fedavgm_the_server_momentum_sees_the_clipped_mean()
    {
        // FedAvgM's first momentum is its Δ; inside the decorator that Δ must be Σ clip(Δ_i)/|S|, not the weighted mean.
        var options = new FixedClippingOptions { NoiseMultiplier = 0, ClippingNorm = 1.0 };
        using var dp = new ServerSideFixedClipping(new FedAvgM(new StrategyOptions { ServerMomentum = 0.9 }), options, NoiseSource.FromRunSeed(0));

        dp.Aggregate(0, Adapter(X0), RoundOne());

        var sum = Rounds[0].Select(c => Clip(Delta(c), 1.0)).Aggregate((u, v) => u.Zip(v, (p, q) => p + q).ToArray());
        var state = dp.State;
        var momentum = Values(state["m/" + KeyA]).Concat(Values(state["m/" + KeyB])).ToArray();
        AssertClose(sum.Select(s => s / 3).ToArray(), momentum, 1e-6, "momentum after round 0");
    }

    [Fact]
    public void Adaptive_clipping_moves_c_geometrically_towards_the_target_quantile()
    {
        // Prepare: no noise (z = 0, σ_b = 0) so the count is exact. C₀ = 1.7: only b (1.63) is unclipped, b̄ = 1/3.
        var options = new AdaptiveClippingOptions
        {
            NoiseMultiplier = 0, ClientsPerRound = 3, InitialClippingNorm = 1.7, ClippedCountStddev = 0,
        };
        using var dp = new ServerSideAdaptiveClipping(new FedAvg(), options, NoiseSource.FromRunSeed(5));

        var next = Flat(dp.Aggregate(0, Adapter(X0), RoundOne()));

        // C₁ = 1.7·exp(−0.2·(1/3 − 0.5)) = 1.7·e^{1/30}: C grows because fewer than half fit.
        Assert.Equal(1.7 * Math.Exp(0.2 / 6), dp.ClippingNorm, 12);
        var sum = Rounds[0].Select(c => Clip(Delta(c), 1.7)).Aggregate((u, v) => u.Zip(v, (p, q) => p + q).ToArray());
        AssertClose(X0.Zip(sum, (x, s) => x + s / 3).ToArray(), next, 1e-6, "round 0 used C₀, not C₁");
        Assert.Equal(0.1 * Math.Exp(-0.2 * 0.5), ServerSideAdaptiveClipping.NextClippingNorm(0.1, 1.0, 0.5, 0.2), 15);
    }

    [Fact]
    public void Adaptive_clipping_state_round_trips_under_the_dp_prefix()
    {
        var options = new AdaptiveClippingOptions { NoiseMultiplier = 0, ClientsPerRound = 3, InitialClippingNorm = 1.7, ClippedCountStddev = 0 };
        using var dp = new ServerSideAdaptiveClipping(new FedAvgM(new StrategyOptions()), options, NoiseSource.FromRunSeed(5));
        dp.Aggregate(0, Adapter(X0), RoundOne());
        var saved = dp.State;
        Assert.Contains(ServerSideAdaptiveClipping.ClippingNormKey, saved.Keys);
        Assert.Contains("m/" + KeyA, saved.Keys);

        using var restored = new ServerSideAdaptiveClipping(new FedAvgM(new StrategyOptions()), options, NoiseSource.FromRunSeed(5));
        restored.LoadState(saved);
        Assert.Equal(dp.ClippingNorm, restored.ClippingNorm);
        AssertBitEqual(dp.State, restored.State, "restored state");

        restored.LoadState(new Dictionary<string, Tensor>());
        Assert.Equal(1.7, restored.ClippingNorm);
        var withoutC = saved.Where(kv => kv.Key != ServerSideAdaptiveClipping.ClippingNormKey).ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.Throws<ArgumentException>(() => restored.LoadState(withoutC));
    }

    sealed class FailingStrategy : IFederatedStrategy
    {
        public string Name => "failing";
        public ClientInstructions ConfigureTrain(int round, double learningRate) => new(round, learningRate);
        public IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates) =>
            throw new AggregationException("inner failure");
        public IReadOnlyDictionary<string, Tensor> State => new Dictionary<string, Tensor>();
        public void LoadState(IReadOnlyDictionary<string, Tensor> state) { }
    }

    [Fact]
    public void Adaptive_clipping_keeps_c_when_the_round_fails()
    {
        var options = new AdaptiveClippingOptions { NoiseMultiplier = 0, ClientsPerRound = 3, InitialClippingNorm = 1.7, ClippedCountStddev = 0 };
        using var dp = new ServerSideAdaptiveClipping(new FailingStrategy(), options, NoiseSource.FromRunSeed(5));
        Assert.Throws<AggregationException>(() => dp.Aggregate(0, Adapter(X0), RoundOne()));
        Assert.Equal(1.7, dp.ClippingNorm);
    }

    [Fact]
    public void Adaptive_clipping_splits_the_noise_multiplier_as_andrew_et_al()
    {
        // z = 1, m = 100 → σ_b = 5, z_Δ = (1 − (2·5)⁻²)^(−1/2) = (0.99)^(−1/2).
        var options = new AdaptiveClippingOptions { NoiseMultiplier = 1, ClientsPerRound = 100 };
        Assert.Equal(5, options.EffectiveClippedCountStddev);
        Assert.Equal(1 / Math.Sqrt(0.99), options.UpdateNoiseMultiplier, 12);
        // m = 10 → σ_b = 0.5 and 2σ_b = z: the count would take the whole budget.
        Assert.Throws<ArgumentException>(() => new AdaptiveClippingOptions { NoiseMultiplier = 1, ClientsPerRound = 10 }.Validate());
        Assert.Throws<ArgumentException>(() => new FixedClippingOptions { NoiseMultiplier = -1, ClippingNorm = 0 }.Validate());
    }

    [Fact]
    public void Local_gaussian_noise_is_reproducible_from_the_generator_and_scaled()
    {
        var zeros = new Dictionary<string, Tensor> { ["w"] = torch.zeros(100, 100, ScalarType.Float64) };
        using var g1 = new torch.Generator(9);
        using var g2 = new torch.Generator(9);
        var a = Values(GaussianNoise.Add(zeros, 0.3, g1)["w"]);
        var b = Values(GaussianNoise.Add(zeros, 0.3, g2)["w"]);
        Assert.Equal(a, b);
        double std = Math.Sqrt(a.Select(v => v * v).Average());
        Assert.InRange(std, 0.3 * 0.97, 0.3 * 1.03);
    }
}
