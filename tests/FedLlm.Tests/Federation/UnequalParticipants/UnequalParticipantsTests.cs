using FedLlm.Data.Partitioning;
using FedLlm.Federation;
using FedLlm.Federation.LowRank;
using FedLlm.Federation.Personalization;
using FedLlm.Federation.Simulation;
using FedLlm.Runs;
using FedLlm.Tests.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation.UnequalParticipants;

public class UnequalParticipantsTests
{
    const string KeyA = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    const string KeyB = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";

    /// <summary>A one-module adapter with A (r × in) and B (out × r) given row by row.</summary>
    static Dictionary<string, Tensor> Lora(double[,] b, double[,] a) => new()
    {
        [KeyA] = tensor(a).to(ScalarType.Float32),
        [KeyB] = tensor(b).to(ScalarType.Float32),
    };

    [Fact]
    public void Separate_averaging_error_matches_hand_arithmetic_with_unequal_weights()
    {
        // 1×1 factors. p = (0.25, 0.75): avg B = 0.25·1 + 0.75·3 = 2.5, avg A = 0.25·2 + 0.75·4 = 3.5, avg B·A = 0.25·2 + 0.75·12 = 9.5;
        // error = |2.5·3.5 − 9.5| / 9.5 = 0.75 / 9.5. Uniform weights would give |2·3 − 7| / 7 instead.
        var adapters = new[] { Lora(new double[,] { { 1 } }, new double[,] { { 2 } }), Lora(new double[,] { { 3 } }, new double[,] { { 4 } }) };
        double error = LoraProducts.SeparateAveragingError(adapters, [0.25, 0.75]);
        Assert.Equal(0.75 / 9.5, error, 6);
        Assert.Equal(0, LoraProducts.SeparateAveragingError([adapters[0]], [1.0]), 9);
    }

    [Fact]
    public void Factor_keeps_the_best_rank_r_part_pads_with_zeros_and_gives_A_unit_rows()
    {
        // diag(3, 1) has singular values 3 and 1: rank 1 keeps 3·e1·e1ᵀ exactly.
        var product = tensor(new double[,] { { 3, 0 }, { 0, 1 } });
        var (b, a) = LoraProducts.Factor(product, rank: 1, paddedRank: 3, ScalarType.Float32);
        Assert.Equal([2L, 3L], b.shape);
        Assert.Equal([3L, 2L], a.shape);
        Assert.True(b.matmul(a).to(ScalarType.Float64).allclose(tensor(new double[,] { { 3, 0 }, { 0, 0 } }), atol: 1e-6));
        Assert.Equal(0, a[1..].abs().sum().item<float>());
        Assert.Equal(1, a[0].norm().item<float>(), 5);
        var (fullB, fullA) = LoraProducts.Factor(product, rank: 2, paddedRank: 2, ScalarType.Float64);
        Assert.True(fullB.matmul(fullA).allclose(product, atol: 1e-12));
    }

    [Fact]
    public void FlexLoRA_with_equal_ranks_aggregates_the_product_exactly_when_the_rank_suffices()
    {
        // Two rank-1 clients inside a rank-2 layout: Σ p_i B_i A_i has rank ≤ 2, so the new global's B·A equals it;
        // separate averaging of the same factors does not.
        var global = Lora(new double[,] { { 0, 0 }, { 0, 0 }, { 0, 0 } }, new double[,] { { 1, 0 }, { 0, 1 } });
        var y1 = Lora(new double[,] { { 1, 0 }, { 2, 0 }, { 0, 0 } }, new double[,] { { 1, 1 }, { 0, 0 } });
        var y2 = Lora(new double[,] { { 0, 0 }, { 0, 0 }, { 0, 5 } }, new double[,] { { 0, 0 }, { 1, -1 } });
        var updates = new[] { new ClientUpdate("a", y1, 30), new ClientUpdate("b", y2, 10) };
        var next = new FlexLora(new StrategyOptions(), InProcessClients.ClientId).Aggregate(0, global, updates);
        var expected = 0.75 * y1[KeyB].matmul(y1[KeyA]) + 0.25 * y2[KeyB].matmul(y2[KeyA]);
        Assert.True(next[KeyB].matmul(next[KeyA]).allclose(expected, atol: 1e-5));
        var separate = (0.75 * y1[KeyB] + 0.25 * y2[KeyB]).matmul(0.75 * y1[KeyA] + 0.25 * y2[KeyA]);
        Assert.False(separate.allclose(expected, atol: 1e-2));
    }

    [Fact]
    public void Split_adapter_averages_only_the_shared_factor()
    {
        var global = Lora(new double[,] { { 0 } }, new double[,] { { 1 } });
        var updates = new[]
        {
            new ClientUpdate("a", Lora(new double[,] { { 2 } }, new double[,] { { 3 } }), 1),
            new ClientUpdate("b", Lora(new double[,] { { 6 } }, new double[,] { { 7 } }), 3),
        };
        var sharedA = new SplitLora(SharedFactor.A).Aggregate(0, global, updates);
        Assert.Equal(0.25 * 3 + 0.75 * 7, sharedA[KeyA].item<float>(), 5);
        Assert.Equal(0, sharedA[KeyB].item<float>());
        var sharedB = new SplitLora(SharedFactor.B).Aggregate(0, global, updates);
        Assert.Equal(0.25 * 2 + 0.75 * 6, sharedB[KeyB].item<float>(), 5);
        Assert.Equal(1, sharedB[KeyA].item<float>());
    }

    [Theory]
    [InlineData(10, 0.2, 2)]
    [InlineData(11, 0.2, 3)]
    [InlineData(1, 0.5, 0)]
    [InlineData(3, 0.9, 2)]
    [InlineData(10, 0.0, 0)]
    public void Client_held_out_split_holds_out_the_ceiling_and_keeps_a_training_example(int count, double fraction, int heldOut)
    {
        Assert.Equal(heldOut, ClientHeldOutSplit.HeldOutCount(count, fraction));
        var (train, held) = ClientHeldOutSplit.Split(Enumerable.Range(0, count).ToList(), fraction, seed: 7);
        Assert.Equal(heldOut, held.Count);
        Assert.Equal(Enumerable.Range(0, count), train.Concat(held).Order());
    }

    static FederationOptions Small => new()
    {
        Rounds = 2, TotalClients = 3, ClientsPerRound = 3, LocalSteps = 2, BatchSize = 2, LearningRate = 1e-2, MinLearningRate = 1e-3,
        Seed = 5, EvaluateEvery = 0,
    };

    static async Task<(Dictionary<string, Tensor> Global, IReadOnlyDictionary<string, Tensor> State, IReadOnlyList<RoundRecord> History)> Run(
        IFederatedStrategy strategy, FederationOptions options)
    {
        var registry = FederatedRun.DefaultAlgorithms;
        var model = FederationCoreTests.AdaptedModel();
        var initial = AdapterTensors.Snapshot(model);
        var clients = new InProcessClients(model, options, FederationCoreTests.Shards(options.TotalClients), padTokenId: 0, registry);
        using var server = new FederationServer(new PayloadAccounting(strategy), options, initial, clients);
        while (server.NextRound < options.Rounds) await server.RunRoundAsync();
        return (AdapterTensors.Clone(server.Global), clients.SnapshotState(), server.History);
    }

    [Fact]
    public async Task Split_adapter_clients_keep_their_personal_factor_and_send_only_the_shared_one()
    {
        var (global, state, history) = await Run(new SplitLora(SharedFactor.A), Small);
        using var model = FederationCoreTests.AdaptedModel();
        var initial = AdapterTensors.Snapshot(model);
        var hooks = new SplitLoraClientHooks();
        foreach (var key in global.Keys.Where(k => k.Contains(".lora_B.")))
            Assert.True(global[key].equal(initial[key]).all().item<bool>(), $"the global's personal factor {key} moved");
        Assert.Contains(global.Keys.Where(k => k.Contains(".lora_A.")), k => !global[k].equal(initial[k]).all().item<bool>());
        for (int c = 0; c < Small.TotalClients; c++)
        {
            string prefix = InProcessClients.ClientId(c) + "/";
            using var own = ClientState.FromTensors(state.Where(kv => kv.Key.StartsWith(prefix)).Select(kv => KeyValuePair.Create(kv.Key[prefix.Length..], kv.Value.clone())));
            var personal = hooks.PersonalAdapter(global, own)!;
            Assert.Contains(personal.Keys.Where(k => k.Contains(".lora_B.")), k => personal[k].abs().sum().item<float>() > 0);
            Assert.All(personal.Keys.Where(k => k.Contains(".lora_A.")), k => Assert.True(personal[k].equal(global[k]).all().item<bool>()));
        }
        // The payload is the A half only: every A has rank × in values, every B out × rank.
        long aBytes = initial.Where(kv => kv.Key.Contains(".lora_A.")).Sum(kv => kv.Value.NumberOfElements * 4);
        Assert.Equal(Small.ClientsPerRound * aBytes, history[^1].AggregationMetrics![PayloadAccounting.MetricName]);
    }

    [Fact]
    public async Task Ditto_keeps_a_personal_adapter_apart_from_the_global_and_its_global_equals_FedAvg()
    {
        var options = Small;
        var (dittoGlobal, state, _) = await Run(new Ditto(new StrategyOptions { DittoLambda = 0.1 }), options);
        var (fedAvgGlobal, _, _) = await Run(new FedLlm.Federation.Strategies.FedAvg(), options);
        // The second training must not disturb the first: w is FedAvg's bit for bit.
        foreach (var key in fedAvgGlobal.Keys) Assert.True(dittoGlobal[key].equal(fedAvgGlobal[key]).all().item<bool>(), key);
        var v = state.Where(kv => kv.Key.StartsWith("client-0/ditto/")).ToDictionary(kv => kv.Key["client-0/ditto/".Length..], kv => kv.Value);
        Assert.Equal(dittoGlobal.Count, v.Count);
        Assert.True(AdapterTensors.DistanceNorm(v, dittoGlobal) > 1e-4);
    }

    [Fact]
    public async Task A_rank_limited_client_trains_and_sends_only_its_first_components()
    {
        var options = Small;
        var ranks = new[] { 1, 2, 1 };
        var strategy = new HetLora(new StrategyOptions { ClientRanks = ranks }, InProcessClients.ClientId);
        var registry = FederatedRun.DefaultAlgorithms;
        using var model = FederationCoreTests.AdaptedModel(); // rank 2
        var initial = AdapterTensors.Snapshot(model);
        using var clients = new InProcessClients(model, options, FederationCoreTests.Shards(options.TotalClients), padTokenId: 0, registry);
        var updates = await clients.TrainRoundAsync(0, [0, 1], initial, strategy.ConfigureTrain(0, 1e-2));
        foreach (var key in initial.Keys.Where(k => k.Contains(".lora_A.")))
        {
            Assert.Equal(0, updates[0].Weights[key][1..].abs().sum().item<float>());
            Assert.True(updates[1].Weights[key][1..].abs().sum().item<float>() > 0);
        }
        foreach (var key in initial.Keys.Where(k => k.Contains(".lora_B.")))
            Assert.Equal(0, updates[0].Weights[key][.., 1..].abs().sum().item<float>());
        long rank1 = initial.Where(kv => kv.Key.Contains(".lora_A.")).Sum(kv => (kv.Value.shape[1] + initial[kv.Key.Replace("lora_A", "lora_B")].shape[0]) * 4);
        Assert.Equal(rank1, updates[0].Metrics![PayloadBytes.MetricName]);
        Assert.Equal(2 * rank1, updates[1].Metrics![PayloadBytes.MetricName]);
    }

    [Fact]
    public async Task A_client_that_declares_its_own_rank_trains_only_those_components_when_the_server_has_no_table()
    {
        var options = Small;
        // The server knows no ranks (a network server whose clients declare lora_rank in client.yaml).
        var strategy = new HetLora(new StrategyOptions(), InProcessClients.ClientId);
        var registry = RankBudget.WithOwnRank(FederatedRun.DefaultAlgorithms, ownRank: 1, globalRank: 2, "client.yaml lora_rank");
        using var model = FederationCoreTests.AdaptedModel(); // rank 2
        var initial = AdapterTensors.Snapshot(model);
        using var clients = new InProcessClients(model, options, FederationCoreTests.Shards(options.TotalClients), padTokenId: 0, registry);
        var updates = await clients.TrainRoundAsync(0, [0], initial, strategy.ConfigureTrain(0, 1e-2));
        foreach (var key in initial.Keys.Where(k => k.Contains(".lora_A.")))
        {
            Assert.Equal(0, updates[0].Weights[key][1..].abs().sum().item<float>());
            Assert.True(updates[0].Weights[key][..1].abs().sum().item<float>() > 0);
        }
        Assert.Equal(1, updates[0].Metrics!["rank"]);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    public void A_declared_rank_outside_1_to_the_runs_rank_is_refused_naming_where_it_came_from(int rank)
    {
        var e = Assert.Throws<ArgumentException>(() => RankBudget.WithOwnRank(FederatedRun.DefaultAlgorithms, rank, globalRank: 2, "client.yaml lora_rank"));
        Assert.Equal($"client.yaml lora_rank {rank} must be between 1 and the run's LoRA rank 2", e.Message);
    }

    [Fact]
    public void Replacing_a_hook_keeps_the_others_and_an_unknown_hook_is_refused()
    {
        var registry = FederatedRun.DefaultAlgorithms;
        var replaced = registry.Replacing(new RankBudgetClientHooks(3));
        Assert.Equal(registry.HookNames, replaced.HookNames);
        Assert.NotSame(registry.Hook(RankBudget.HookName), replaced.Hook(RankBudget.HookName));
        Assert.Same(registry.Hook(FedLlm.Federation.Strategies.FedProx.HookName), replaced.Hook(FedLlm.Federation.Strategies.FedProx.HookName));
        Assert.Contains("no client hook 'nobody'", Assert.Throws<ArgumentException>(() => new AlgorithmRegistry().Replacing(new NamedHooks("nobody"))).Message);
    }

    sealed class NamedHooks(string name) : IClientHooks
    {
        public string Name => name;
        public void BeforeTraining(ClientRoundContext context) { }
        public void AfterTraining(ClientRoundContext context) { }
    }

    static RunOptions Options(string yaml)
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "run.yaml");
        File.WriteAllText(path, yaml);
        return RunConfig.Load(path).ToRunOptions("out");
    }

    [Fact]
    public void Configuration_is_parsed_and_bad_values_are_refused_before_any_work()
    {
        var good = Options("federation: {clients: 4}\ndata: {client_eval_fraction: 0.2}\nstrategy: {algorithms: [ditto, hetlora]}\n" +
            "lora: {r: 8, rank_per_client: [2, 4, 8, 8]}\npersonalization: {finetune_steps: 3, ditto_lambda: 0.5}\n");
        Assert.Throws<ArgumentException>(() => good.Validate(FederatedRun.DefaultAlgorithms)); // ditto does not read the ranks
        var fine = good with { Algorithms = ["hetlora", "flexlora"] };
        fine.Validate(FederatedRun.DefaultAlgorithms);
        Assert.Equal(0.5, fine.Strategy.DittoLambda);
        Assert.Equal([2, 4, 8, 8], fine.Strategy.ClientRanks);
        Assert.Equal(3, fine.Personalization!.FinetuneSteps);

        string Failure(string yaml) => Assert.Throws<ArgumentException>(() => Options(yaml).Validate(FederatedRun.DefaultAlgorithms)).Message;
        Assert.Contains("data.client_eval_fraction", Failure("personalization: {finetune_steps: 3}\n"));
        Assert.Contains("data.client_eval_fraction", Failure("data: {client_eval_fraction: 1.5}\n"));
        Assert.Contains("4 ranks for 3 clients", Failure("federation: {clients: 3}\nstrategy: {algorithms: [flexlora]}\nlora: {r: 8, rank_per_client: [2, 4, 8, 8]}\n"));
        Assert.Contains("exceeds the global adapter's rank", Failure("federation: {clients: 2}\nstrategy: {algorithms: [hetlora]}\nlora: {r: 4, rank_per_client: [2, 8]}\n"));
        Assert.Contains("DittoLambda", Failure("personalization: {ditto_lambda: -1}\ndata: {client_eval_fraction: 0.2}\nstrategy: {algorithms: [ditto]}\n"));
        Assert.Throws<FedLlm.Configuration.ConfigurationException>(() => Options("personalization: {finetune_stepz: 3}\n"));
    }
}
