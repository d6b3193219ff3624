using System.Text.Json;
using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using FedLlm.Privacy;
using FedLlm.Runs;
using FedLlm.Tests.Data;
using FedLlm.Tests.Federation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Privacy;

/// <summary>The DP client hooks (client-side clipping, local DP) on real local training, and the accountant's ε in a run's
/// metrics.</summary>
public class ClientPrivacyTests
{
    static FederationOptions Options(int rounds = 1) => new()
    {
        Rounds = rounds, TotalClients = 4, ClientsPerRound = 2, LocalSteps = 3, BatchSize = 2, LearningRate = 5e-2, MinLearningRate = 1e-3,
        Seed = 7, EvaluateEvery = 0,
    };

    static Tensor Flat(IReadOnlyDictionary<string, Tensor> map) =>
        torch.cat(map.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Value.flatten()).ToList());

    static double Norm(IReadOnlyDictionary<string, Tensor> y, IReadOnlyDictionary<string, Tensor> x) => AdapterTensors.DistanceNorm(y, x);

    [Fact]
    public async Task Client_side_clipping_sends_updates_within_the_clipping_norm()
    {
        // Prepare: the same clients trained once without and once with the clipping hook (same seeds, so the same y_i).
        var options = Options();
        using var model = FederationCoreTests.AdaptedModel();
        var global = AdapterTensors.Snapshot(model);
        using var clients = new InProcessClients(model, options, FederationCoreTests.Shards(options.TotalClients), padTokenId: 0, FederatedRun.DefaultAlgorithms);
        var plain = await clients.TrainRoundAsync(0, [0, 1], global, new FedAvg().ConfigureTrain(0, options.LearningRate));
        var unclipped = plain.Select(u => Norm(u.Weights, global)).ToArray();
        double c = unclipped.Min() / 2; // both updates must be clipped

        // Execute
        using var strategy = new ClientSideFixedClipping(new FedAvg(), new FixedClippingOptions { NoiseMultiplier = 0, ClippingNorm = c, ClientsPerRound = 2 },
            NoiseSource.FromRunSeed(1));
        var instructions = strategy.ConfigureTrain(0, options.LearningRate);
        var clipped = await clients.TrainRoundAsync(0, [0, 1], global, instructions);

        // Assert: ‖y_i − x‖ ≤ C (up to float32 rounding of x + Δ), the direction kept, the norm before clipping reported.
        Assert.Equal([ClientSideFixedClipping.HookName], instructions.Hooks);
        for (int i = 0; i < 2; i++)
        {
            double norm = Norm(clipped[i].Weights, global);
            Assert.InRange(norm, c * (1 - 1e-4), c * (1 + 1e-4));
            Assert.Equal(unclipped[i], clipped[i].Metrics!["dp_update_norm"], 4);
            using var direction = Flat(TensorMaps.Difference(plain[i].Weights, global));
            using var sentDirection = Flat(TensorMaps.Difference(clipped[i].Weights, global));
            Assert.True((direction * (c / unclipped[i])).allclose(sentDirection, rtol: 1e-3, atol: 1e-6));
        }
        foreach (var u in plain.Concat(clipped)) u.DisposeTensors();
    }

    [Fact]
    public void Local_dp_clips_then_adds_noise_of_standard_deviation_sigma_times_c()
    {
        // Prepare: a large adapter whose local update is Δ = 3 in every coordinate (norm ≫ C), so the clipped update is
        // the constant C/√d and what remains is the noise.
        const double c = 0.5, sigma = 2.0;
        const int d = 2 * 150 * 150;
        var global = new Dictionary<string, Tensor> { ["a"] = zeros(150, 150), ["b"] = zeros(150, 150) };
        var local = global.ToDictionary(kv => kv.Key, kv => full(150, 150, 3.0f));
        using var strategy = new LocalDifferentialPrivacy(new FedAvg(), c, sigma, runSeed: 11);
        var instructions = strategy.ConfigureTrain(3, 1e-3);
        using var context = new ClientRoundContext("client-2", instructions, global, [], new ClientState(), 1) { Local = local };

        // Execute
        new LocalDpClientHooks().AfterTraining(context);

        // Assert: mean C/√d per coordinate, std σC (3 % is over 10 standard errors of the std at d = 45,000).
        var sent = Flat(context.Local!);
        double standardError = sigma * c / Math.Sqrt(d);
        Assert.InRange(sent.mean().item<float>(), c / Math.Sqrt(d) - 4 * standardError, c / Math.Sqrt(d) + 4 * standardError);
        double std = sent.std().item<float>();
        Assert.InRange(std, sigma * c * 0.97, sigma * c * 1.03);
        Assert.Equal(Math.Sqrt(3.0 * 3.0 * d), context.Metrics["dp_update_norm"], 3);

        // The run seed, round and client fix the noise: the same again is bit-identical, another client differs.
        using var again = new ClientRoundContext("client-2", instructions, global, [], new ClientState(), 1) { Local = AdapterTensors.Clone(local) };
        new LocalDpClientHooks().AfterTraining(again);
        Assert.True(again.Local!["a"].eq(context.Local!["a"]).all().item<bool>());
        using var other = new ClientRoundContext("client-3", instructions, global, [], new ClientState(), 1) { Local = AdapterTensors.Clone(local) };
        new LocalDpClientHooks().AfterTraining(other);
        Assert.False(other.Local!["a"].eq(context.Local!["a"]).all().item<bool>());
    }

    [Fact]
    public void Without_a_seed_in_the_instructions_local_noise_is_seeded_cryptographically()
    {
        var global = new Dictionary<string, Tensor> { ["a"] = zeros(20, 20) };
        using var strategy = new LocalDifferentialPrivacy(new FedAvg(), 1, 1, runSeed: null);
        var instructions = strategy.ConfigureTrain(0, 1e-3);
        Assert.DoesNotContain(LocalDifferentialPrivacy.NoiseSeedKey, instructions.Config.Keys);
        using var first = new ClientRoundContext("c", instructions, global, [], new ClientState(), 1) { Local = AdapterTensors.Clone(global) };
        using var second = new ClientRoundContext("c", instructions, global, [], new ClientState(), 1) { Local = AdapterTensors.Clone(global) };
        new LocalDpClientHooks().AfterTraining(first);
        new LocalDpClientHooks().AfterTraining(second);
        Assert.False(first.Local!["a"].eq(second.Local!["a"]).all().item<bool>());
    }

    [Fact]
    public async Task The_accountants_epsilon_in_metrics_grows_every_round_and_matches_the_rdp_accountant()
    {
        // Prepare: DP-FedAvg over 4 rounds, q = 2/4, σ = 1.3, committed to a run store as a real run would be.
        var options = Options(rounds: 4);
        var privacy = new PrivacyOptions { Mode = PrivacyMode.ServerFixed, ClippingNorm = 0.05, NoiseMultiplier = 1.3, Delta = 1e-3 };
        var plan = PrivacyPlan.Create(privacy, options);
        using var dir = new TempDirectory();
        using var model = FederationCoreTests.AdaptedModel();
        var initial = AdapterTensors.Snapshot(model);
        using var clients = new InProcessClients(model, options, FederationCoreTests.Shards(options.TotalClients), padTokenId: 0, FederatedRun.DefaultAlgorithms);
        var strategy = DifferentialPrivacy.Wrap(new FedAvg(), privacy, plan, NoiseSeeding.RunSeed, options.Seed);
        using (var server = new FederationServer(strategy, options, initial, clients, new RunStore(dir.Path)))
            await server.RunAsync();

        // Execute: read metrics.jsonl back.
        var records = MetricsJsonl.Read(Path.Combine(dir.Path, "metrics.jsonl")).ToList();

        // Assert: ε after round r equals an independent accountant composed r + 1 times, and strictly increases.
        Assert.Equal(4, records.Count);
        var accountant = new RdpAccountant();
        double previous = 0;
        foreach (var record in records)
        {
            accountant.Compose(0.5, 1.3);
            var spent = record.Privacy ?? throw new Xunit.Sdk.XunitException($"round {record.Round} has no privacy field");
            Assert.Equal(accountant.GetEpsilon(1e-3), spent.Epsilon!.Value, 10);
            Assert.Equal(1e-3, spent.Delta);
            Assert.True(spent.Epsilon > previous, $"ε did not grow at round {record.Round}");
            previous = spent.Epsilon.Value;
        }
        Assert.Equal(plan.EpsilonAfter(4).Epsilon, previous, 12);
    }

    [Fact]
    public async Task A_run_stopped_at_its_budget_runs_only_the_rounds_that_fit_and_evaluates_the_last()
    {
        var options = Options(rounds: 6) with { EvaluateEvery = 4 };
        // A budget just above ε after 3 rounds: the plan stops there.
        double budget = RdpAccountant.EpsilonAfter(0.5, 3.0, 3, 1e-3).Epsilon * 1.0001;
        var privacy = new PrivacyOptions { NoiseMultiplier = 3.0, TargetEpsilon = budget, Delta = 1e-3, StopAtBudget = true, ClippingNorm = 0.05 };
        var plan = PrivacyPlan.Create(privacy, options);
        Assert.Equal(3, plan.StopAfterRounds);
        var stopping = options with { StopAfterRounds = plan.StopAfterRounds };
        using var model = FederationCoreTests.AdaptedModel();
        var initial = AdapterTensors.Snapshot(model);
        using var clients = new InProcessClients(model, stopping, FederationCoreTests.Shards(options.TotalClients), padTokenId: 0, FederatedRun.DefaultAlgorithms);
        int evaluations = 0;
        using var server = new FederationServer(DifferentialPrivacy.Wrap(new FedAvg(), privacy, plan, NoiseSeeding.RunSeed, 1), stopping, initial, clients,
            evaluate: _ => { evaluations++; return new EvaluationResult(0, 0); });
        await server.RunAsync();
        Assert.Equal(plan.StopAfterRounds, server.History.Count);
        Assert.NotNull(server.History[^1].EvalLoss); // the last round that ran is scored, whatever evaluate_every says
        Assert.True(server.History[^1].Privacy!.Epsilon <= budget);
    }
}
