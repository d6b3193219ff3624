using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using FedLlm.Federation.SecureAggregation;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using FedLlm.Privacy;
using FedLlm.Runs;
using FedLlm.Tests.Data;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation.SecureAggregation;

/// <summary>Secure aggregation in a run: the strategy decorator and the executor on real local training, against the
/// plain algorithm; with client-side DP; with dropouts; and the secure_aggregation: section.</summary>
public class SecureAggregationRunTests
{
    static FederationOptions Options() => new()
    {
        Rounds = 1, TotalClients = 4, ClientsPerRound = 3, LocalSteps = 2, BatchSize = 2, LearningRate = 5e-2, MinLearningRate = 1e-3,
        Seed = 11, EvaluateEvery = 0,
    };

    /// <summary>The global after one round of <paramref name="strategy"/> with <paramref name="wrap"/> around the in-process clients.</summary>
    static async Task<(Dictionary<string, Tensor> Global, Dictionary<string, Tensor> Initial, RoundRecord Record)> OneRound(
        IFederatedStrategy strategy, Func<IClientExecutor, IClientExecutor> wrap)
    {
        var options = Options();
        using var model = FederationCoreTests.AdaptedModel();
        var initial = AdapterTensors.Snapshot(model);
        var clients = wrap(new InProcessClients(model, options, FederationCoreTests.Shards(options.TotalClients), padTokenId: 0, FederatedRun.DefaultAlgorithms));
        using var server = new FederationServer(strategy, options, initial, clients);
        var record = await server.RunRoundAsync();
        var global = AdapterTensors.Clone(server.Global);
        (clients as IDisposable)?.Dispose();
        return (global, initial, record);
    }

    static double MaxAbsDifference(IReadOnlyDictionary<string, Tensor> a, IReadOnlyDictionary<string, Tensor> b) =>
        a.Keys.Max(k => (a[k].to(ScalarType.Float64) - b[k].to(ScalarType.Float64)).abs().max().item<double>());

    [Fact]
    public async Task Secure_fedavg_equals_plain_fedavg_within_the_quantisation_bound()
    {
        // Prepare: weights n_i/W with W above every client's count, so the secure mean is FedAvg's example-weighted mean.
        var secure = new SecureAggregationOptions { QuantisationBits = 20, QuantisationRange = 0.5, MaxWeight = 100 };

        // Execute
        var plain = await OneRound(new FedAvg(), c => c);
        var masked = await OneRound(new SecureAggregationStrategy(new FedAvg(), secure, 3), c => new SecureAggregationClients(c));

        // Assert: within n·r/((2^b − 1)·Σw) per coordinate (Σw ≥ 3 × 6/100), plus float32 rounding of x + Δ; the plain
        // step is far larger, so the test would see a wrong weighting.
        double bound = 3 * 0.5 / ((1 << 20) - 1) / (3 * 6 / 100.0) + 1e-6;
        Assert.InRange(MaxAbsDifference(plain.Global, masked.Global), 0, bound);
        Assert.True(MaxAbsDifference(plain.Global, plain.Initial) > 100 * bound);
        var info = masked.Record.SecureAggregation!;
        Assert.Equal(3, info.Survivors);
        Assert.Equal(2, info.Threshold); // a majority of 3 holders
        Assert.True(info.ProtocolBytes > 0);
        Assert.Equal([SecureAggregate.ClientId], masked.Record.Clients);
        Assert.True(masked.Record.BytesReceived > info.ProtocolBytes / 2, "the masked inputs are what the server receives");
    }

    [Fact]
    public async Task Client_side_dp_noise_goes_on_the_secure_sum_of_clipped_updates()
    {
        // Prepare: σ = 0 to compare the clipping and the fixed denominator exactly; C small enough that every update is clipped.
        var dp = new FixedClippingOptions { NoiseMultiplier = 0, ClippingNorm = 1e-3, ClientsPerRound = 4 };
        var secure = new SecureAggregationOptions { QuantisationBits = 24, QuantisationRange = 0.01 };

        // Execute
        var plain = await OneRound(new ClientSideFixedClipping(new FedAvg(), dp, NoiseSource.FromRunSeed(1)), c => c);
        var masked = await OneRound(new SecureAggregationStrategy(new ClientSideFixedClipping(new FedAvg(), dp, NoiseSource.FromRunSeed(1)), secure, 3),
            c => new SecureAggregationClients(c));

        // Assert: the same Σ clip(Δ_i)/m (m = 4, three clients) within the quantisation bound.
        double bound = 0.01 / ((1 << 24) - 1) + 1e-7;
        Assert.InRange(MaxAbsDifference(plain.Global, masked.Global), 0, bound);
        double step = AdapterTensors.DistanceNorm(masked.Global, masked.Initial);
        Assert.InRange(step, 1e-3 / 4, 3e-3 / 4 * (1 + 1e-3)); // ‖Σ clip(Δ_i)‖/m ≤ 3C/m, and far from zero
    }

    [Fact]
    public async Task A_client_dropping_after_sharing_keys_leaves_the_others_mean()
    {
        var secure = new SecureAggregationOptions { QuantisationBits = 20, QuantisationRange = 0.5 };
        var options = Options();
        using var model = FederationCoreTests.AdaptedModel();
        var global = AdapterTensors.Snapshot(model);
        using var inner = new InProcessClients(model, options, FederationCoreTests.Shards(options.TotalClients), padTokenId: 0);
        var instructions = new SecureAggregationStrategy(new FedAvg(), secure, 3).ConfigureTrain(0, options.LearningRate);
        var plain = await inner.TrainRoundAsync(0, [0, 1, 3], global, instructions);
        var executor = new SecureAggregationClients(inner, (round, id, phase) => id == "client-1" && phase == SecAggPhase.MaskedInput);

        var aggregate = (await executor.TrainRoundAsync(0, [0, 1, 3], global, instructions)).Single();

        Assert.Equal(2, aggregate.Metrics![SecureAggregate.ClientsMetric]);
        Assert.Equal(1, aggregate.Metrics[SecureAggregationClients.DroppedMetric]);
        foreach (var key in global.Keys)
        {
            using var expected = (plain[0].Weights[key] + plain[2].Weights[key]) / 2;
            Assert.True(expected.allclose(aggregate.Weights[key], rtol: 0, atol: 2e-6), key);
        }
        foreach (var u in plain.Append(aggregate)) u.DisposeTensors();
    }

    [Fact]
    public async Task Rounds_without_secure_aggregation_settings_pass_through()
    {
        var options = Options();
        using var model = FederationCoreTests.AdaptedModel();
        var global = AdapterTensors.Snapshot(model);
        using var executor = new SecureAggregationClients(new InProcessClients(model, options, FederationCoreTests.Shards(options.TotalClients), padTokenId: 0));
        var updates = await executor.TrainRoundAsync(0, [0, 2], global, new FedAvg().ConfigureTrain(0, 1e-2));
        Assert.Equal(["client-0", "client-2"], updates.Select(u => u.ClientId));
        foreach (var u in updates) u.DisposeTensors();
        Assert.Throws<AggregationException>(() => new SecureAggregationStrategy(new FedAvg(), new SecureAggregationOptions(), 2).Aggregate(0, global, [.. updates]));
    }

    static RunOptions Parse(string yaml)
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "run.yaml");
        File.WriteAllText(path, yaml);
        return RunConfig.Load(path).ToRunOptions("out");
    }

    const string Federation = "federation: { rounds: 2, clients: 10, clients_per_round: 5 }\n";

    [Theory]
    [InlineData("secure_aggregation: { neighbours: 3 }", "secure_aggregation.neighbours must be an even number")]
    [InlineData("secure_aggregation: { threshold: 2 }", "secure_aggregation.threshold 2 must be more than half")]
    [InlineData("secure_aggregation: { threshold: 9 }", "secure_aggregation.threshold 9 must be in [2, 5]")]
    [InlineData("secure_aggregation: { quantisation_bits: 31 }", "overflows the ring")]
    [InlineData("secure_aggregation: { quantisation_range: 0 }", "secure_aggregation.quantisation_range")]
    [InlineData("secure_aggregation: { max_weight: -1 }", "secure_aggregation.max_weight")]
    [InlineData("secure_aggregation: {}\nrobust: { rule: median }", "hides the individual updates")]
    [InlineData("secure_aggregation: {}\nprivacy: { mode: server-fixed, noise_multiplier: 1 }", "the server cannot clip updates it never sees")]
    [InlineData("secure_aggregation: { max_weight: 10 }\nprivacy: { mode: client-fixed, noise_multiplier: 1 }", "DP's sensitivity needs equal weights")]
    [InlineData("secure_aggregation: {}\nstrategy: { algorithms: [scaffold] }", "cannot carry scaffold's per-client tensor sets")]
    public void Bad_settings_are_refused_before_any_work_naming_the_key(string section, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => Parse(Federation + section).Validate(FederatedRun.DefaultAlgorithms));
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void The_section_maps_onto_typed_options_and_can_be_switched_off()
    {
        var options = Parse(Federation + "secure_aggregation: { threshold: 4, neighbours: 4, quantisation_bits: 20, quantisation_range: 0.25 }").SecureAggregation!;
        Assert.Equal(new SecureAggregationOptions { Threshold = 4, Neighbours = 4, QuantisationBits = 20, QuantisationRange = 0.25 }, options);
        Parse(Federation + "secure_aggregation: { threshold: 4, neighbours: 4 }").Validate(FederatedRun.DefaultAlgorithms);
        Assert.Null(Parse(Federation + "secure_aggregation: { enabled: false, threshold: 4 }").SecureAggregation);
        Assert.Equal(3, new SecureAggregationOptions().ResolvedThreshold(5));
        Assert.Equal(3, new SecureAggregationOptions { Neighbours = 4 }.ResolvedThreshold(50));
    }
}
