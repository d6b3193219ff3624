using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using FedLlm.Federation.LowRank;
using FedLlm.Federation.Simulation;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Runs;
using FedLlm.Tests.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation.UnequalParticipants;

public class FloraTests
{
    const string KeyA = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    const string KeyB = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";

    static Dictionary<string, Tensor> Lora(double[,] b, double[,] a) => new()
    {
        [KeyA] = tensor(a).to(ScalarType.Float32),
        [KeyB] = tensor(b).to(ScalarType.Float32),
    };

    static RoundRecord EmptyRecord => new()
    {
        Round = 0, LearningRate = 0, Clients = [], ClientLoss = new Dictionary<string, double>(), UpdateNorms = new Dictionary<string, double>(),
        GlobalStepNorm = 0, BytesSent = 0, BytesReceived = 0, Seconds = 0,
    };

    [Fact]
    public void Stacking_ranks_1_and_2_multiplies_back_to_the_weighted_sum_of_the_products()
    {
        // B1·A1 = [[3, 1], [6, 2]], B2·A2 = [[1, 1], [0, 8]]; p = (0.25, 0.75):
        // 0.25·[[3, 1], [6, 2]] + 0.75·[[1, 1], [0, 8]] = [[1.5, 1], [1.5, 6.5]].
        var b1 = tensor(new double[,] { { 1 }, { 2 } });
        var a1 = tensor(new double[,] { { 3, 1 } });
        var b2 = tensor(new double[,] { { 1, 0 }, { 0, 2 } });
        var a2 = tensor(new double[,] { { 1, 1 }, { 0, 4 } });
        var (b, a) = FloraStacking.Stack([b1, b2], [a1, a2], [0.25, 0.75]);
        Assert.Equal([2L, 3L], b.shape);
        Assert.Equal([3L, 2L], a.shape);
        Assert.True(b.matmul(a).equal(tensor(new double[,] { { 1.5, 1 }, { 1.5, 6.5 } })).all().item<bool>());
        // Averaging the padded factors instead (rank 1 zero-padded to 2) lands elsewhere: the cross terms remain.
        var paddedB1 = cat([b1, zeros(2, 1, ScalarType.Float64)], 1);
        var paddedA1 = cat([a1, zeros(1, 2, ScalarType.Float64)], 0);
        var separate = (0.25 * paddedB1 + 0.75 * b2).matmul(0.25 * paddedA1 + 0.75 * a2);
        Assert.False(separate.allclose(b.matmul(a), atol: 1e-2));
        Assert.Contains("do not chain", Assert.Throws<ArgumentException>(() => FloraStacking.Stack([b1, b2], [a2, a2], [0.5, 0.5])).Message);
    }

    [Fact]
    public void One_round_adds_the_weighted_client_products_to_the_accumulated_update_exactly()
    {
        // Layout rank 3, fresh rank 1 (the table's largest): k = min(2, 2, 3 − 1) = 2 components hold ΔW = diag(2, 1),
        // the third is the fresh module (A row [0.5, 0.5], B column 0).
        var global = Lora(new double[,] { { 2, 0, 0 }, { 0, 1, 0 } }, new double[,] { { 1, 0 }, { 0, 1 }, { 0.5, 0.5 } });
        // Fresh products: y1 [1, 0]ᵀ[1, 2] = [[1, 2], [0, 0]], y2 [3, 3]ᵀ[0, 1] = [[0, 3], [0, 3]]; p = (0.75, 0.25).
        var y1 = Lora(new double[,] { { 2, 0, 1 }, { 0, 1, 0 } }, new double[,] { { 1, 0 }, { 0, 1 }, { 1, 2 } });
        var y2 = Lora(new double[,] { { 2, 0, 3 }, { 0, 1, 3 } }, new double[,] { { 1, 0 }, { 0, 1 }, { 0, 1 } });
        var strategy = new Flora(new StrategyOptions { ClientRanks = [1, 1] }, InProcessClients.ClientId);
        var next = strategy.Aggregate(0, global, [new ClientUpdate("client-0", y1, 30), new ClientUpdate("client-1", y2, 10)]);
        // diag(2, 1) + 0.75·[[1, 2], [0, 0]] + 0.25·[[0, 3], [0, 3]]
        var expected = tensor(new double[,] { { 2.75, 2.25 }, { 0, 1.75 } }).to(ScalarType.Float32);
        Assert.True(next[KeyB].matmul(next[KeyA]).allclose(expected, atol: 1e-5));
        Assert.True(next[KeyA][2].equal(global[KeyA][2]).all().item<bool>(), "the fresh module restarts from the run's initial A");
        Assert.Equal(0, next[KeyB][.., 2].abs().sum().item<float>());
        var record = strategy.Annotate(EmptyRecord);
        Assert.True(record.AggregationMetrics![Flora.TruncationMetric] < 1e-7);
        Assert.Equal("1", strategy.ConfigureTrain(1, 1e-3).Config[FloraStacking.FreshRankKey]);
    }

    [Fact]
    public void A_layout_too_small_for_the_accumulated_update_keeps_its_best_part_and_reports_what_was_dropped()
    {
        // Layout rank 2, fresh rank 1: k = 1 cannot hold diag(2, 0) + [[0, 0], [0, 1]] = diag(2, 1); it keeps 2·e1e1ᵀ,
        // dropping 1 of ‖diag(2, 1)‖ = √5.
        var global = Lora(new double[,] { { 2, 0 }, { 0, 0 } }, new double[,] { { 1, 0 }, { 0, 1 } });
        var y = Lora(new double[,] { { 2, 0 }, { 0, 1 } }, new double[,] { { 1, 0 }, { 0, 1 } });
        var strategy = new Flora(new StrategyOptions { ClientRanks = [1] }, InProcessClients.ClientId);
        var next = strategy.Aggregate(0, global, [new ClientUpdate("client-0", y, 5)]);
        Assert.True(next[KeyB].matmul(next[KeyA]).allclose(tensor(new float[,] { { 2, 0 }, { 0, 0 } }), atol: 1e-6));
        Assert.Equal(1 / Math.Sqrt(5), strategy.Annotate(EmptyRecord).AggregationMetrics![Flora.TruncationMetric], 6);
    }

    [Fact]
    public void An_update_that_moved_the_frozen_accumulated_update_is_refused_naming_the_client_and_tensor()
    {
        var global = Lora(new double[,] { { 2, 0, 0 }, { 0, 1, 0 } }, new double[,] { { 1, 0 }, { 0, 1 }, { 0.5, 0.5 } });
        var moved = Lora(new double[,] { { 2, 0, 1 }, { 0, 1.5, 0 } }, new double[,] { { 1, 0 }, { 0, 1 }, { 1, 2 } });
        var strategy = new Flora(new StrategyOptions { ClientRanks = [1, 1] }, InProcessClients.ClientId);
        var e = Assert.Throws<AggregationException>(() => strategy.Aggregate(0, global, [new ClientUpdate("client-1", moved, 3)]));
        Assert.Equal("client-1", e.ClientId);
        Assert.Equal(KeyB, e.Key);
    }

    /// <summary>The tiny model (hidden 32, key/value 16) with a rank-34 layout: with fresh rank 2 every module keeps
    /// min(out, in) ≤ 32 components for the accumulated update, so FLoRA is exact.</summary>
    static LlamaForCausalLM FloraModel()
    {
        var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true), seed: 21, std: 0.2);
        LoraInjector.Inject(model, new LoraOptions { Rank = 34, Alpha = 68, Dropout = 0.1 }, new Generator(4));
        return model;
    }

    static readonly FederationOptions Small = new()
    {
        Rounds = 3, TotalClients = 3, ClientsPerRound = 2, LocalSteps = 2, BatchSize = 2, LearningRate = 1e-2, MinLearningRate = 1e-3,
        Seed = 5, EvaluateEvery = 0,
    };

    static readonly int[] Ranks = [1, 2, 1];

    [Fact]
    public async Task Clients_train_only_their_fresh_components_and_the_new_global_is_the_old_plus_the_weighted_changes()
    {
        var strategy = new Flora(new StrategyOptions { ClientRanks = Ranks }, InProcessClients.ClientId);
        using var model = FloraModel();
        var initial = AdapterTensors.Snapshot(model);
        // Round 0's initial adapter holds no update (B = 0): give the frozen part a non-zero ΔW, as after earlier rounds.
        foreach (var key in initial.Keys.Where(k => k.Contains(".lora_B.")))
            initial[key][.., ..4] = rand(initial[key].shape[0], 4, generator: new Generator(9)) - 0.5;
        using var clients = new InProcessClients(model, Small, FederationCoreTests.Shards(Small.TotalClients), padTokenId: 0, FederatedRun.DefaultAlgorithms);
        var updates = await clients.TrainRoundAsync(0, [0, 1, 2], initial, strategy.ConfigureTrain(0, 1e-2));
        foreach (var (update, rank) in updates.Zip(Ranks))
        {
            foreach (var module in LoraProducts.Modules(initial))
            {
                int k = (int)Math.Min(initial[module.KeyB].shape[0], initial[module.KeyA].shape[1]);
                var (a, b) = (update.Weights[module.KeyA], update.Weights[module.KeyB]);
                Assert.True(a[..k].equal(initial[module.KeyA][..k]).all().item<bool>(), $"{update.ClientId}: frozen A of {module.KeyA} moved");
                Assert.True(b[.., ..k].equal(initial[module.KeyB][.., ..k]).all().item<bool>(), $"{update.ClientId}: frozen B of {module.KeyB} moved");
                Assert.True(b[.., k..(k + rank)].abs().sum().item<float>() > 0, $"{update.ClientId}: fresh B of {module.KeyB} did not train");
                Assert.Equal(0, a[(k + rank)..].abs().sum().item<float>());
                Assert.Equal(0, b[.., (k + rank)..].abs().sum().item<float>());
            }
            Assert.Equal(rank, update.Metrics!["rank"]);
        }

        var next = strategy.Aggregate(0, initial, updates);
        var p = LoraProducts.ExampleWeights(updates.Select(u => u.ExampleCount).ToList());
        foreach (var module in LoraProducts.Modules(initial))
        {
            Tensor Product(IReadOnlyDictionary<string, Tensor> adapter) =>
                adapter[module.KeyB].to(ScalarType.Float64).matmul(adapter[module.KeyA].to(ScalarType.Float64));
            var before = Product(initial);
            var expected = before + updates.Select((u, i) => (Product(u.Weights) - before) * p[i]).Aggregate((x, y) => x + y);
            var actual = Product(next);
            double error = (actual - expected).norm().item<double>() / expected.norm().item<double>();
            Assert.True(error < 1e-6, $"{module.KeyA}: relative error {error}");
        }
        Assert.True(strategy.Annotate(EmptyRecord).AggregationMetrics![Flora.TruncationMetric] < 1e-6);
        foreach (var update in updates) update.DisposeTensors();
    }

    static Dictionary<string, Tensor> Run(FederationOptions options, string? storeDir, int rounds, bool resume)
    {
        using var model = FloraModel();
        var initial = AdapterTensors.Snapshot(model);
        using var clients = new InProcessClients(model, options, FederationCoreTests.Shards(options.TotalClients), padTokenId: 0, FederatedRun.DefaultAlgorithms);
        var strategy = new Flora(new StrategyOptions { ClientRanks = Ranks, TotalClients = options.TotalClients }, InProcessClients.ClientId);
        using var server = new FederationServer(strategy, options, initial, clients, storeDir is null ? null : new RunStore(storeDir));
        if (resume) Assert.True(server.TryResume());
        while (server.NextRound < rounds) server.RunRoundAsync().GetAwaiter().GetResult();
        return AdapterTensors.Clone(server.Global);
    }

    [Fact]
    public void A_flora_run_killed_after_a_committed_round_resumes_to_the_same_adapter_bit_for_bit()
    {
        var straight = Run(Small, null, 3, resume: false);
        using var dir = new TempDirectory();
        Run(Small, dir.Path, 2, resume: false); // "killed" after round 2 (of 1 … 3) was committed
        var resumed = Run(Small, dir.Path, 3, resume: true);
        foreach (var (key, tensor) in straight)
            Assert.True(tensor.bytes.SequenceEqual(resumed[key].bytes), $"{key} differs after resume");
        Assert.Contains(straight.Where(kv => kv.Key.Contains(".lora_B.")), kv => kv.Value.abs().sum().item<float>() > 0);
    }

    [Fact]
    public void A_network_client_with_its_own_rank_gets_it_in_the_flora_hook_too()
    {
        var registry = RankBudget.WithOwnRank(FederatedRun.DefaultAlgorithms, ownRank: 3, globalRank: 8, "client.yaml lora_rank");
        Assert.NotSame(FederatedRun.DefaultAlgorithms.Hook(FloraClientHooks.HookName), registry.Hook(FloraClientHooks.HookName));
    }

    [Fact]
    public void The_gradient_hook_runs_before_the_clip_so_zeroed_gradients_do_not_count_in_its_norm()
    {
        // FLoRA's frozen components must not shrink the fresh module's clipped step: the trainer reports the norm it
        // clipped, which is 0 when the hook zeroed every gradient first, and positive when the hook ran after the clip.
        using var model = FloraModel();
        using var trainer = new FedLlm.Training.LocalTrainer(model, new FedLlm.Training.TrainingOptions { MaxSteps = 1, BatchSize = 2, LearningRate = 1e-2 }, padTokenId: 0);
        var parameters = AdapterKeys.Parameters(model).Select(p => p.Parameter).ToList();
        trainer.BeforeGradientClip = () => { foreach (var p in parameters) p.grad?.zero_(); };
        var examples = FederationCoreTests.Shards(1)[0];
        Assert.Equal(0, trainer.TrainStep(examples, 0, 1e-2).GradNorm);
        trainer.BeforeGradientClip = null;
        Assert.True(trainer.TrainStep(examples, 1, 1e-2).GradNorm > 0);
    }

    static RunOptions Options(string yaml)
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "run.yaml");
        File.WriteAllText(path, yaml);
        return RunConfig.Load(path).ToRunOptions("out");
    }

    [Fact]
    public void Flora_configurations_that_cannot_work_are_refused_before_any_work()
    {
        const string good = "federation: {clients: 4}\nstrategy: {algorithms: [flora, hetlora]}\nlora: {r: 40, rank_per_client: [4, 8, 8, 8]}\n";
        Options(good).Validate(FederatedRun.DefaultAlgorithms);
        string Failure(string yaml) => Assert.Throws<ArgumentException>(() => Options(yaml).Validate(FederatedRun.DefaultAlgorithms)).Message;
        Assert.Contains("the largest rank 8 leaves no component of lora.r = 8",
            Failure("federation: {clients: 2}\nstrategy: {algorithms: [flora]}\nlora: {r: 8, rank_per_client: [4, 8]}\n"));
        Assert.Contains("federation.keep_optimizer_state with flora",
            Failure("federation: {clients: 2, keep_optimizer_state: true}\nstrategy: {algorithms: [flora]}\nlora: {r: 8}\n"));
        Assert.Contains("robust with flora", Failure("federation: {clients: 4}\nstrategy: {algorithms: [flora]}\nrobust: {rule: median}\n"));
        Assert.Contains("lora.rank_per_client is used by hetlora, flexlora and flora; fedavg",
            Failure("federation: {clients: 2}\nstrategy: {algorithms: [flora, fedavg]}\nlora: {r: 8, rank_per_client: [2, 4]}\n"));
        Assert.Empty(RunConfigValidator.Problems(RunConfig.Load(WriteTemp(good))));
    }

    static string WriteTemp(string yaml)
    {
        string path = Path.Combine(Directory.CreateTempSubdirectory().FullName, "run.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }
}
