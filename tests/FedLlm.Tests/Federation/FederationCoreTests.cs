using FedLlm.Data;
using FedLlm.Federation;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using FedLlm.Modeling;
using FedLlm.Peft;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation;

public class FederationCoreTests
{
    internal static LlamaForCausalLM AdaptedModel()
    {
        var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true), seed: 21, std: 0.2);
        LoraInjector.Inject(model, new LoraOptions { Rank = 2, Alpha = 4, Dropout = 0.1 }, new Generator(4));
        return model;
    }

    internal static List<IReadOnlyList<SftExample>> Shards(int clients)
    {
        var rng = new Random(3);
        return Enumerable.Range(0, clients).Select(c => (IReadOnlyList<SftExample>)Enumerable.Range(0, 6 + 3 * c).Select(_ =>
        {
            var ids = Enumerable.Range(0, rng.Next(5, 9)).Select(_ => rng.Next(4, 97)).ToArray();
            return new SftExample(ids, ids.Select((id, i) => i < 2 ? -100 : id).ToArray(), 2, false, true);
        }).ToList()).ToList();
    }

    static FederationOptions Options(bool keepOptimizer = false) => new()
    {
        Rounds = 3, TotalClients = 4, ClientsPerRound = 2, LocalSteps = 2, BatchSize = 2, LearningRate = 1e-2, MinLearningRate = 1e-3,
        Seed = 11, KeepClientOptimizerState = keepOptimizer, EvaluateEvery = 0,
    };

    static Dictionary<string, Tensor> Run(string strategyName, FederationOptions options, string? storeDir, int rounds, bool resume)
    {
        using var model = AdaptedModel();
        var initial = AdapterTensors.Snapshot(model);
        using var clients = new InProcessClients(model, options, Shards(options.TotalClients), padTokenId: 0);
        var strategy = StrategyFactory.Create(strategyName, new StrategyOptions { TotalClients = options.TotalClients });
        using var server = new FederationServer(strategy, options, initial, clients, storeDir is null ? null : new RunStore(storeDir));
        if (resume) Assert.True(server.TryResume());
        while (server.NextRound < rounds) server.RunRoundAsync().GetAwaiter().GetResult();
        (strategy as IDisposable)?.Dispose();
        return AdapterTensors.Clone(server.Global);
    }

    [Theory]
    [InlineData("fedavg", false)]
    [InlineData("scaffold", true)]
    [InlineData("fedadam", false)]
    [InlineData("fedprox", true)]
    public void A_run_killed_after_a_committed_round_resumes_to_the_same_adapter_bit_for_bit(string strategy, bool keepOptimizer)
    {
        var options = Options(keepOptimizer);
        var straight = Run(strategy, options, null, 3, resume: false);
        string dir = Directory.CreateTempSubdirectory().FullName;
        Run(strategy, options, dir, 2, resume: false);        // "killed" after round 2 (of 1 … 3) was committed
        Assert.True(Directory.Exists(Path.Combine(dir, "state-2")));
        Assert.False(Directory.Exists(Path.Combine(dir, "state-1")), "older states are removed once a newer one is committed");
        var resumed = Run(strategy, options, dir, 3, resume: true);
        foreach (var (key, tensor) in straight)
            Assert.True(tensor.bytes.SequenceEqual(resumed[key].bytes), $"{strategy}: {key} differs after resume");
        Assert.Equal(3, File.ReadAllLines(Path.Combine(dir, "metrics.jsonl")).Length);
        Assert.Contains(straight.Values, t => t.abs().sum().item<float>() > 0);
    }

    [Fact]
    public async Task RunAsync_without_a_progress_reporter_runs_every_round()
    {
        var options = Options();
        using var model = AdaptedModel();
        var initial = AdapterTensors.Snapshot(model);
        using var clients = new InProcessClients(model, options, Shards(options.TotalClients), padTokenId: 0);
        using var server = new FederationServer(new FedAvg(), options, initial, clients);
        // A spinning loop never returns, so run it where the test can give up on it.
        await Task.Run(() => server.RunAsync()).WaitAsync(TimeSpan.FromSeconds(120));
        Assert.Equal(options.Rounds, server.NextRound);
        Assert.Equal(options.Rounds, server.History.Count);
    }

    [Fact]
    public void With_one_client_fedavg_returns_that_clients_trained_adapter()
    {
        var options = Options() with { TotalClients = 1, ClientsPerRound = 1, Rounds = 1 };
        var federated = Run("fedavg", options, null, 1, resume: false);

        using var model = AdaptedModel();
        var initial = AdapterTensors.Snapshot(model);
        var client = new FederatedClient(model, options.ClientTraining, StrategyFactory.BuiltIn, 0);
        using var state = new ClientState();
        var update = client.Train("client-0", 0, Shards(1)[0], initial, new ClientInstructions(0, RoundSchedule.LearningRate(0, options)), state);
        foreach (var (key, tensor) in update.Weights)
            Assert.True(tensor.allclose(federated[key], rtol: 0, atol: 1e-7), key);
        Assert.True(AdapterTensors.DistanceNorm(update.Weights, initial) > 0, "local training must move the adapter");
    }

    [Fact]
    public void Round_schedule_follows_openfedllm()
    {
        var o = new FederationOptions { Rounds = 4, LearningRate = 5e-5, MinLearningRate = 1e-6, TotalClients = 20, ClientsPerRound = 2, Seed = 1 };
        Assert.Equal(5e-5, RoundSchedule.LearningRate(0, o), 15);
        Assert.Equal(1e-6 + 0.5 * (5e-5 - 1e-6), RoundSchedule.LearningRate(2, o), 15);
        var sample = RoundSchedule.SampleClients(3, o);
        Assert.Equal(2, sample.Count);
        Assert.Equal(sample.Order(), sample);
        Assert.Equal(sample, RoundSchedule.SampleClients(3, o));
        Assert.True(Enumerable.Range(0, 10).Select(r => string.Join(",", RoundSchedule.SampleClients(r, o))).Distinct().Count() > 3);
        Assert.Equal(new[] { 0, 1 }, RoundSchedule.SampleClients(0, o with { TotalClients = 2, ClientsPerRound = 5 }));
    }
}
