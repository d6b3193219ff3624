using FedLlm.Runs;
using FedLlm.Alignment;
using FedLlm.Federation;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Tests.Alignment;

/// <summary>DPO through the federation core: the same round loop, strategies and checkpoints as instruction tuning.</summary>
public class FederatedDpoTests
{
    static LlamaForCausalLM AdaptedModel()
    {
        var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true), seed: 11, std: 0.2);
        LoraInjector.Inject(model, new LoraOptions { Rank = 8, Alpha = 16, Dropout = 0 }, new Generator(5));
        return model;
    }

    static FederationOptions Options(int rounds = 3) => new()
    {
        Rounds = rounds, TotalClients = 3, ClientsPerRound = 2, LocalSteps = 4, BatchSize = 8, LearningRate = 1e-2, MinLearningRate = 1e-3,
        Seed = 7, EvaluateEvery = 0,
    };

    static List<DpoClientDataset> Clients(DpoOptions dpo) =>
        // Shards of different sizes, so a missing example-count weight would change the aggregate.
        new[] { 40, 24, 64 }.Select((n, i) => new DpoClientDataset(TokenPreferencePairs.Create(n, 100 + i), dpo, padTokenId: 0)).ToList();

    [Fact]
    public async Task Federated_DPO_raises_the_held_out_margin_and_accuracy_and_each_client_computes_its_reference_once_per_pair()
    {
        using var model = AdaptedModel();
        var dpo = new DpoOptions();
        var clients = Clients(dpo);
        var heldOut = TokenPreferencePairs.Create(32, seed: 2);
        using var scores = new PreferenceHeldOut(model, heldOut, dpo, padTokenId: 0);
        var options = Options(rounds: 6) with { EvaluateEvery = 3 };
        var runner = new SimulationRunner(model, options, new LoraOptions { Rank = 8, Alpha = 16, Dropout = 0 }, scores.Evaluate, null, padTokenId: 0);
        var before = scores.Metrics();
        string dir = Directory.CreateTempSubdirectory().FullName;
        var outcome = await runner.RunFederatedAsync(StrategyFactory.Create("fedavg", new StrategyOptions { TotalClients = 3 }), clients.Cast<IClientDataset>().ToList(),
            dir, resume: false);

        Assert.Equal(0, before.RewardsMargin, 6);
        Assert.Equal(0, before.RewardsAccuracy, 6); // policy = reference: every reward is 0, no pair is "won"
        var final = outcome.Final!;
        Assert.True(final.Score >= 0.75, $"held-out reward accuracy {final.Score:P0}");
        Assert.True(final.Metrics!["eval_rewards/margins"] > 0.2, $"held-out margin {final.Metrics["eval_rewards/margins"]:F3}");
        Assert.True(final.Loss < Math.Log(2) - 0.05, $"held-out DPO loss {final.Loss:F3}");
        // The round loop wrote the DPO metrics into metrics.jsonl.
        Assert.Contains("eval_rewards/margins", File.ReadAllText(Path.Combine(dir, "metrics.jsonl")));
        // 6 rounds × 4 steps × 8 pairs sample far more than any shard holds; the reference pass still ran at most once per pair.
        foreach (var client in clients)
        {
            Assert.True(client.Reference.PairsComputed > 0);
            Assert.Equal(client.Reference.Count, client.Reference.PairsComputed);
            Assert.True(client.Reference.PairsComputed <= client.Count);
            client.Dispose();
        }
    }

    [Theory]
    [InlineData("fedavg")]
    [InlineData("fedprox")]
    [InlineData("scaffold")]
    [InlineData("fedavgm")]
    [InlineData("fedadagrad")]
    [InlineData("fedyogi")]
    [InlineData("fedadam")]
    public void Every_strategy_runs_DPO_and_resumes_to_the_same_adapter_bit_for_bit(string strategyName)
    {
        var options = Options(rounds: 3) with { KeepClientOptimizerState = strategyName == "scaffold" };
        Dictionary<string, Tensor> Run(string? storeDir, int rounds, bool resume)
        {
            using var model = AdaptedModel();
            var initial = AdapterTensors.Snapshot(model);
            var data = Clients(new DpoOptions());
            using var clients = new InProcessClients(model, options, data.Cast<IClientDataset>().ToList(), padTokenId: 0);
            var strategy = StrategyFactory.Create(strategyName, new StrategyOptions { TotalClients = options.TotalClients, ServerLearningRate = 1e-2 });
            using var server = new FederationServer(strategy, options, initial, clients, storeDir is null ? null : new RunStore(storeDir));
            if (resume) Assert.True(server.TryResume());
            while (server.NextRound < rounds)
            {
                var record = server.RunRoundAsync().GetAwaiter().GetResult();
                Assert.All(record.ClientLoss.Values, loss => Assert.True(double.IsFinite(loss) && loss > 0));
            }
            (strategy as IDisposable)?.Dispose();
            foreach (var d in data) d.Dispose();
            return AdapterTensors.Clone(server.Global);
        }

        var straight = Run(null, 3, resume: false);
        string dir = Directory.CreateTempSubdirectory().FullName;
        Run(dir, 2, resume: false); // "killed" after round 1 was committed; the reference caches are lost with the process
        var resumed = Run(dir, 3, resume: true);
        foreach (var (key, tensor) in straight)
            Assert.True(tensor.allclose(resumed[key], rtol: 0, atol: 0), $"{strategyName}: {key} differs after resume");
        // And DPO moved the adapter (B starts at zero: a no-op round would leave every lora_B at zero).
        Assert.Contains(straight, kv => kv.Key.Contains("lora_B") && kv.Value.abs().max().item<float>() > 0);
    }

    [Fact]
    public async Task One_client_one_round_is_exactly_local_DPO_with_the_round_seed()
    {
        var dpo = new DpoOptions();
        var pairs = TokenPreferencePairs.Create(40, seed: 5);
        var options = Options(rounds: 1) with { TotalClients = 1, ClientsPerRound = 1 };

        using var federatedModel = AdaptedModel();
        var initial = AdapterTensors.Snapshot(federatedModel);
        using var data = new DpoClientDataset(pairs, dpo, padTokenId: 0);
        using var clients = new InProcessClients(federatedModel, options, new IClientDataset[] { data }, padTokenId: 0);
        using var server = new FederationServer(StrategyFactory.Create("fedavg", new StrategyOptions { TotalClients = 1 }), options, initial, clients);
        await server.RunRoundAsync();

        using var localModel = AdaptedModel();
        var training = new TrainingOptions
        {
            MaxSteps = options.LocalSteps, BatchSize = options.BatchSize, LearningRate = RoundSchedule.LearningRate(0, options),
            Schedule = LearningRateScheduleKind.Constant, MaxGradNorm = options.MaxGradNorm, MaxSequenceLength = options.MaxSequenceLength,
            Seed = RoundSchedule.LocalSeed(0, 0, options),
        };
        // The client precomputes its reference values over its whole list in batches of the batch size; do the same here.
        using var reference = new ReferenceLogProbCache();
        reference.Get(localModel, pairs, Enumerable.Range(0, pairs.Count).ToList(), new PreferenceCollator(0), training.BatchSize, training.LossChunkTokens);
        using (var trainer = new DpoTrainer(localModel, training, dpo, padTokenId: 0, reference)) trainer.Train(pairs);
        var local = AdapterIO.State(localModel);
        // FedAvg of a single client is that client's adapter.
        foreach (var (key, tensor) in server.Global)
            Assert.True(tensor.allclose(local[key], rtol: 0, atol: 1e-7), $"{key}: federated ≠ local DPO");
    }
}
