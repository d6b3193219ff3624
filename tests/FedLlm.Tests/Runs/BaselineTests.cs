using FedLlm.Training;
using FedLlm.Data;
using FedLlm.Federation;
using FedLlm.Federation.Strategies;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Runs;
using FedLlm.Tests.Data;
using static TorchSharp.torch;

namespace FedLlm.Tests.Runs;

public class BaselineTests
{
    static (LlamaForCausalLM Model, LoraOptions Lora) TinyModel()
    {
        var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true) with { VocabSize = 140 }, seed: 21, std: 0.2);
        var lora = new LoraOptions { Rank = 2, Alpha = 4, Dropout = 0.1 };
        LoraInjector.Inject(model, lora, new Generator(4));
        return (model, lora);
    }

    static List<IReadOnlyList<SftExample>> Shards(params int[] sizes)
    {
        var rng = new Random(3);
        return sizes.Select(n => (IReadOnlyList<SftExample>)Enumerable.Range(0, n).Select(_ =>
        {
            var ids = Enumerable.Range(0, 6).Select(_ => rng.Next(10, 140)).ToArray();
            return new SftExample(ids, ids.Select((id, i) => i < 2 ? -100 : id).ToArray(), 2, false, true);
        }).ToList()).ToList();
    }

    static byte[] AdapterBytes(string dir) => File.ReadAllBytes(Path.Combine(dir, "adapter_model.safetensors"));

    [Fact]
    public async Task Local_only_is_each_client_as_a_one_client_FedAvg_federation_bit_for_bit_and_central_the_pooled_one()
    {
        // Prepare: a cosine across rounds, dropout (seeded per round) and a fresh optimizer each round all shape the result.
        using var dir = new TempDirectory();
        var (model, lora) = TinyModel();
        using var _ = model;
        var options = new FederationOptions
        {
            Rounds = 3, TotalClients = 2, ClientsPerRound = 2, LocalSteps = 2, BatchSize = 2, LearningRate = 5e-2, MinLearningRate = 1e-2,
            Seed = 5, EvaluateEvery = 0,
        };
        var shards = Shards(3, 5);
        var tokenizer = new CharTokenizer();
        var runner = new SimulationRunner(model, tokenizer, PromptTemplate.Alpaca, options, lora, heldOut: null, baseModel: null);
        var one = options with { TotalClients = 1, ClientsPerRound = 1 };
        var alone = new SimulationRunner(model, tokenizer, PromptTemplate.Alpaca, one, lora, heldOut: null, baseModel: null);
        var pooledRunner = new SimulationRunner(model, tokenizer, PromptTemplate.Alpaca, one with { LocalSteps = 4 }, lora, heldOut: null, baseModel: null);
        int pad = tokenizer.PadTokenId ?? 0;

        // Execute
        var local = await runner.RunLocalOnlyAsync(shards.Select(s => (IClientDataset)new SftClientDataset(s, pad)).ToList(),
            Path.Combine(dir.Path, "local"), resume: false);
        await alone.RunFederatedAsync(new FedAvg(), [shards[1]], Path.Combine(dir.Path, "fedavg-1"), resume: false);
        var pooled = shards.SelectMany(s => s).ToList();
        await runner.RunCentralizedAsync(new SftClientDataset(pooled, pad), Path.Combine(dir.Path, "central"), resume: false);
        await pooledRunner.RunFederatedAsync(new FedAvg(), [pooled], Path.Combine(dir.Path, "fedavg-pooled"), resume: false);

        // Assert
        Assert.Equal([0, 1], local.Clients!.Select(c => c.Client));
        Assert.Equal([3, 5], local.Clients!.Select(c => c.Examples));
        Assert.True(local.IsBaseline);
        Assert.Equal(3, local.Clients![1].Outcome.Rounds.Count);
        Assert.Equal(AdapterBytes(Path.Combine(dir.Path, "fedavg-1", "adapter")), AdapterBytes(Path.Combine(dir.Path, "local", "client-1", "adapter")));
        Assert.NotEqual(AdapterBytes(Path.Combine(dir.Path, "local", "client-0", "adapter")), AdapterBytes(Path.Combine(dir.Path, "local", "client-1", "adapter")));
        Assert.Equal(AdapterBytes(Path.Combine(dir.Path, "fedavg-pooled", "adapter")), AdapterBytes(Path.Combine(dir.Path, "central", "adapter")));
        // Rounds are numbered 1 … R on disk.
        Assert.True(Directory.Exists(Path.Combine(dir.Path, "central", "rounds", "round-3")));
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "central", "rounds", "round-0")));
    }

    static ClientOutcome Client(int index, int examples, double loss, double score, Dictionary<string, double>? metrics) =>
        new(index, examples, new RunOutcome($"c{index}", new EvaluationResult(loss, score, metrics), [], 1));

    [Fact]
    public void The_local_only_row_weights_clients_by_example_count_and_keeps_their_spread()
    {
        var clients = new[]
        {
            Client(0, 1, loss: 2.0, score: 0.2, new() { ["macro_f1"] = 0.1, ["only_here"] = 9 }),
            Client(1, 3, loss: 1.0, score: 0.6, new() { ["macro_f1"] = 0.5 }),
        };

        var mean = BaselineMath.WeightedMean(clients)!;
        var spread = BaselineMath.Spread(clients)!.Value;

        // (1·0.2 + 3·0.6)/4 = 0.5; the unweighted mean would be 0.4.
        Assert.Equal(0.5, mean.Score, 12);
        Assert.Equal(1.25, mean.Loss, 12);
        Assert.Equal(0.4, mean.Metrics!["macro_f1"], 12);
        Assert.False(mean.Metrics.ContainsKey("only_here"), "a metric some client lacks is not averaged");
        Assert.Equal((0.2, 0.6, 1.0, 2.0), spread);
    }

    static SeedOutcomes Seed(long seed, double fedavg, double local) => new(seed,
    [
        new RunOutcome("fedavg", new EvaluationResult(1.0, fedavg), [], 1),
        new RunOutcome("local-only", new EvaluationResult(1.5, local), [], 1) { IsBaseline = true },
    ]);

    [Fact]
    public void Seeds_give_mean_and_sample_standard_deviation_and_a_paired_difference()
    {
        var seeds = new[] { Seed(1, 0.5, 0.6), Seed(2, 0.7, 0.75), Seed(3, 0.9, 0.6) };

        var rows = SeedSummary.Rows(seeds);
        var paired = SeedSummary.Paired(seeds, "fedavg", "local-only")!;

        Assert.Equal(["fedavg", "local-only"], rows.Select(r => r.Name));
        Assert.Equal(0.7, rows[0].Score!.Mean, 12);
        Assert.Equal(0.2, rows[0].Score!.StandardDeviation, 12); // n − 1; the population sd would be 0.163
        Assert.True(rows[1].IsBaseline);
        Assert.Equal([-0.1, -0.05, 0.3], paired.ScoreBySeed.Select(d => Math.Round(d, 12)));
        Assert.Equal(1, paired.Wins);
        Assert.Equal(-0.5, paired.Loss.Mean, 12);
        Assert.Equal(0, SeedStatistic.Of([0.4]).StandardDeviation);
    }

    [Fact]
    public void Each_seed_has_its_own_seed_and_folder()
    {
        var options = new RunOptions { Federation = new FederationOptions { Seed = 10 }, Seeds = 3, Output = "out" };

        var third = options.ForSeed(2);

        Assert.Equal(12, third.Federation.Seed);
        Assert.Equal(Path.Combine("out", "seed-12"), third.Output);
        Assert.Equal(1, third.Seeds);
        Assert.Equal("out", (options with { Seeds = 1 }).ForSeed(0).Output);
    }
}

public class ShippedRunConfigTests
{
    static string RepositoryFile(params string[] parts)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "FedLlm.sln"))) dir = dir.Parent;
        Assert.NotNull(dir);
        return Path.Combine([dir!.FullName, .. parts]);
    }

    [Fact]
    public void The_client_drift_example_loads_as_the_12_round_10_client_setting()
    {
        var options = RunConfig.Load(RepositoryFile("examples", "client-drift.yaml")).ToRunOptions("out");

        Assert.Equal(12, options.Federation.Rounds);
        Assert.Equal(10, options.Federation.TotalClients);
        Assert.Equal(["local", "central"], options.Baselines);
        options.Validate(StrategyFactory.BuiltIn);
    }

    [Fact]
    public void The_embedded_default_runs_three_algorithms_and_both_baselines_for_30_rounds()
    {
        var options = RunConfig.EmbeddedDefault("sft").ToRunOptions("out");

        Assert.Equal(["fedavg", "fedprox", "scaffold"], options.Algorithms);
        Assert.Equal(["local", "central"], options.Baselines);
        Assert.Equal(30, options.Federation.Rounds);
        Assert.Equal(1, options.Seeds);
        options.Validate(StrategyFactory.BuiltIn);
    }
}
