using System.Globalization;
using System.Net;
using System.Net.Sockets;
using FedLlm.Runs;
using FedLlm.Checkpoints;
using FedLlm.Data;
using FedLlm.Federation;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Security;
using FedLlm.Tests.Data;
using FedLlm.Tests.Defaults;
using FedLlm.Tokenization;
using static TorchSharp.torch;

namespace FedLlm.Tests.Network;

/// <summary>
/// A federation small enough for process tests: a tiny Llama checkpoint (the default tokenizer, 2 layers of width 32)
/// written to a temp folder, one Alpaca file per client, and server/client YAML pointing at them. The same files drive
/// the in-process reference run (<see cref="Simulate"/>), so network and simulation can be compared bit for bit.
/// </summary>
internal sealed class TinyFederation : IDisposable
{
    readonly TempDirectory temp = new();

    public TinyFederation(int clients, string strategy = "fedavg", int rounds = 3, int localSteps = 2, bool keepOptimizerState = false, bool tls = false,
        string task = "sft")
    {
        Strategy = strategy;
        Tls = tls;
        Task = task;
        Federation = new RunConfig.FederationSection
        {
            Rounds = rounds, Clients = clients, ClientsPerRound = clients, LocalSteps = localSteps, BatchSize = 2, LearningRate = 2e-2,
            MinLearningRate = 1e-3, MaxLength = 48, Seed = 17, KeepOptimizerState = keepOptimizerState, EvaluateEvery = 0,
        };
        ModelDirectory = Path.Combine(Root, "model");
        Directory.CreateDirectory(ModelDirectory);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(DefaultsFixtures.TokenizerDirectory, file), Path.Combine(ModelDirectory, file));
        var tokenizer = TokenizerLoader.Load(ModelDirectory);
        var config = TinyModels.Llama(tied: true) with { VocabSize = tokenizer.VocabSize, BosTokenId = tokenizer.BosTokenId, EosTokenIds = tokenizer.EosTokenIds.ToList() };
        using (var model = LlamaForCausalLM.CreateRandom(config, seed: 5, std: 0.2)) ModelLoader.Save(ModelDirectory, model);

        // Client c holds 5 + 2c examples whose answers lean differently, so the clients' updates (and weights n_i) differ.
        DataFiles = Enumerable.Range(0, clients).Select(c =>
        {
            string path = Path.Combine(Root, $"client-{c}.jsonl");
            if (task == "dpo")
            {
                // Preference pairs in the generic {prompt, chosen, rejected} schema: the correct sentiment preferred.
                File.WriteAllLines(path, Enumerable.Range(0, 5 + 2 * c).Select(i =>
                {
                    bool rose = i % (c + 2) == 0;
                    return System.Text.Json.JsonSerializer.Serialize(new
                    {
                        prompt = $"Headline: shares of company {c * 10 + i} {(rose ? "rose" : "fell")} {i + 2} percent. Sentiment:",
                        chosen = rose ? " positive" : " negative",
                        rejected = rose ? " negative" : " positive",
                    });
                }));
                return path;
            }
            AlpacaWriter.WriteJsonl(path, Enumerable.Range(0, 5 + 2 * c).Select(i => new AlpacaRecord(
                $"Classify the headline: shares of company {c * 10 + i} {(i % (c + 2) == 0 ? "rose" : "fell")} {i + 2} percent", "",
                i % (c + 2) == 0 ? "positive" : "negative")));
            return path;
        }).ToList();
    }

    public string Root => temp.Path;

    /// <summary>Mutual TLS with a provisioning kit in Root/kit (else --insecure h2c).</summary>
    public bool Tls { get; }
    string KitDirectory => Path.Combine(Root, "kit");
    public string ModelDirectory { get; }
    public IReadOnlyList<string> DataFiles { get; }
    public string Strategy { get; }

    /// <summary>sft (Alpaca examples) or dpo (preference pairs) on every side.</summary>
    public string Task { get; }
    public RunConfig.FederationSection Federation { get; }
    public LoraOptions Lora { get; } = new() { Rank = 2, Alpha = 4, Dropout = 0.1 };
    public string Output => Path.Combine(Root, "run");
    public IReadOnlyList<string> Roster => DataFiles.Select((_, c) => $"client-{c}").ToList();

    /// <summary>A free loopback port (taken and released, so a restarted server can bind the same one).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Writes server.yaml (insecure, loopback) and returns its path.</summary>
    public string WriteServerYaml(int port = 0, double deadlineSeconds = 60, int? minUpdates = null, double heartbeatSeconds = 1, double heartbeatTimeoutSeconds = 15,
        string encoding = "fp32", string extraServer = "")
    {
        var f = Federation;
        // FedBuff has no rounds to fill, so server.yaml may not set min_updates with an async: section.
        bool asynchronous = extraServer.Contains("async:", StringComparison.Ordinal);
        string minimum = minUpdates is { } m ? $"min_updates: {m}" : asynchronous ? "" : $"min_updates: {Roster.Count}";
        string yaml = string.Create(CultureInfo.InvariantCulture, $"""
            task: {Task}
            model:
              path: {ModelDirectory}
            federation:
              rounds: {f.Rounds}
              clients_per_round: {f.ClientsPerRound}
              local_steps: {f.LocalSteps}
              batch_size: {f.BatchSize}
              learning_rate: {f.LearningRate:R}
              min_learning_rate: {f.MinLearningRate:R}
              max_length: {f.MaxLength}
              seed: {f.Seed}
              keep_optimizer_state: {(f.KeepOptimizerState ? "true" : "false")}
              evaluate_every: 0
            strategy:
              algorithms: [{Strategy}]
            lora:
              r: {Lora.Rank}
              alpha: {Lora.Alpha:R}
              dropout: {Lora.Dropout:R}
            server:
              listen: 127.0.0.1:{port}
              roster: [{string.Join(", ", Roster)}]
              round_deadline_seconds: {deadlineSeconds:R}
              {minimum}
              heartbeat_seconds: {heartbeatSeconds:R}
              heartbeat_timeout_seconds: {heartbeatTimeoutSeconds:R}
              encoding: {encoding}
            {extraServer}
            output: {Output}
            threads: 1
            """);
        if (Tls)
        {
            if (!Directory.Exists(KitDirectory)) ProvisioningKit.Create(KitDirectory, new[] { "127.0.0.1" }, Roster, "https://127.0.0.1:50051");
            yaml = yaml.Replace("  encoding: ", $"  kit: {Path.Combine(KitDirectory, "server")}\n  auth: certificate\n  encoding: ");
        }
        string path = Path.Combine(Root, "server.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    /// <summary>Clients compute with this process's thread count: libtorch's parallel reductions (DPO's log-softmax over the
    /// vocabulary among them) split work by thread count, so bit-identical results need the same count on both sides.</summary>
    static int ClientThreads => TorchSharp.torch.get_num_threads();

    public string WriteClientYaml(int client, string extra = "")
    {
        string path = Path.Combine(Root, $"client-{client}.yaml");
        File.WriteAllText(path, $"""
            client_id: client-{client}
            task: {Task}
            model_path: {ModelDirectory}
            data:
              path: {DataFiles[client]}
              dataset: {(Task == "dpo" ? "generic-preference" : "alpaca")}
            state_dir: {Path.Combine(Root, "state", $"client-{client}")}
            threads: {ClientThreads}
            {(Tls ? $"kit: {ProvisioningKit.ClientFolder(KitDirectory, $"client-{client}")}" : "")}
            {extra}
            """);
        return path;
    }

    public CliProcess StartServer(string yaml) =>
        new("server", Root, new[] { "server", "--config", yaml }.Concat(Tls ? [] : new[] { "--insecure" }).ToArray());

    public CliProcess StartClient(int client, string address, IReadOnlyDictionary<string, string>? environment = null) =>
        new($"client-{client}", Root, environment, new[] { "client", "--server", address, "--config", WriteClientYaml(client) }.Concat(Tls ? [] : new[] { "--insecure" }).ToArray());

    /// <summary>The server's final adapter, as written to output/adapter/.</summary>
    public Dictionary<string, Tensor> FinalAdapter()
    {
        using var file = SafeTensorsFile.Open(Path.Combine(Output, "adapter", AdapterIO.WeightsFileName));
        return file.Tensors.Keys.ToDictionary(k => k, k => file.Read(k));
    }

    /// <summary>The same run in one process: the simulation's <see cref="InProcessClients"/> on the same shards; with
    /// <paramref name="secure"/>, behind the simulation's secure aggregation (<paramref name="dropsBefore"/>: its
    /// simulated dropouts).</summary>
    /// <param name="privacy">Client-level DP around the strategy (noise seeded from the run seed), inside secure aggregation.</param>
    public Dictionary<string, Tensor> Simulate(FedLlm.Federation.SecureAggregation.SecureAggregationOptions? secure = null,
        Func<int, string, FedLlm.Federation.SecureAggregation.SecAggPhase, bool>? dropsBefore = null, FedLlm.Privacy.PrivacyOptions? privacy = null)
    {
        var options = Federation.ToOptions();
        using var model = ModelLoader.Load(ModelDirectory, ScalarType.Float32);
        LoraInjector.Inject(model, Lora, new Generator((ulong)options.Seed));
        var initial = AdapterTensors.Snapshot(model);
        var tokenizer = TokenizerLoader.Load(ModelDirectory);
        // The same loader a network client uses, so both sides train on identical examples.
        var objective = new LocalObjective { Task = Task };
        var shards = DataFiles.Select(f => RunData.LoadClient(objective, f, Task == "dpo" ? "generic-preference" : "alpaca", "alpaca", false, tokenizer,
            options.MaxSequenceLength)).ToList();
        // The registry a server and a network client use (the built-in algorithms and every added one).
        using var inProcess = new InProcessClients(model, options, shards, tokenizer.PadTokenId ?? 0, FederatedRun.DefaultAlgorithms);
        var strategySection = new RunConfig.StrategySection { Algorithms = new() { Strategy } };
        var strategy = FederatedRun.DefaultAlgorithms.Create(Strategy, strategySection.ToOptions(Strategy, options.TotalClients));
        IClientExecutor clients = inProcess;
        if (privacy is not null)
            strategy = FedLlm.Privacy.DifferentialPrivacy.Wrap(strategy, privacy, FedLlm.Privacy.PrivacyPlan.Create(privacy, options), FedLlm.Privacy.NoiseSeeding.RunSeed, options.Seed);
        if (secure is not null)
        {
            strategy = new FedLlm.Federation.SecureAggregation.SecureAggregationStrategy(strategy, secure, options.ClientsPerRound);
            clients = new FedLlm.Federation.SecureAggregation.SecureAggregationClients(inProcess, dropsBefore);
        }
        using var server = new FederationServer(strategy, options, initial, clients);
        server.RunAsync().GetAwaiter().GetResult();
        (strategy as IDisposable)?.Dispose();
        AdapterTensors.Dispose(initial);
        foreach (var shard in shards) (shard as IDisposable)?.Dispose();
        return AdapterTensors.Clone(server.Global);
    }

    /// <summary>The same run in one process with per-client evaluation (data.client_eval_fraction =
    /// <paramref name="clientEvalFraction"/>, personalization: with defaults): each client's file split by the seeded
    /// rule, the federation on the training parts, then simulate's <see cref="PersonalEvaluation"/> of every client;
    /// with the final global adapter.</summary>
    public (PersonalScores Scores, Dictionary<string, Tensor> Global) SimulatePersonal(double clientEvalFraction)
    {
        var options = Federation.ToOptions();
        using var model = ModelLoader.Load(ModelDirectory, ScalarType.Float32);
        LoraInjector.Inject(model, Lora, new Generator((ulong)options.Seed));
        var initial = AdapterTensors.Snapshot(model);
        var tokenizer = TokenizerLoader.Load(ModelDirectory);
        var split = DataFiles.Select((f, c) => RunData.LoadClientWithHeldOut(f, "alpaca", "alpaca", false, tokenizer, options.MaxSequenceLength,
            clientEvalFraction, options.Seed, c)).ToList();
        var shards = split.Select(s => s.Shard).ToList();
        var evaluation = new FedLlm.Evaluation.HeldOutEvaluation(model, tokenizer, FedLlm.Data.PromptTemplate.FromName("alpaca"), options.MaxSequenceLength);
        using var data = RunData.OfClients(shards, split.Select(s => s.HeldOut).ToList(), examples =>
        {
            var scores = evaluation.Evaluate(examples);
            return new EvaluationResult(scores.Loss, scores.ExactMatch);
        });
        using var inProcess = new InProcessClients(model, options, shards, tokenizer.PadTokenId ?? 0, FederatedRun.DefaultAlgorithms);
        var strategySection = new RunConfig.StrategySection { Algorithms = new() { Strategy } };
        var strategy = FederatedRun.DefaultAlgorithms.Create(Strategy, strategySection.ToOptions(Strategy, options.TotalClients));
        var hooks = strategy.ConfigureTrain(0, options.LearningRate);
        hooks.DisposeTensors();
        var personal = hooks.Hooks.Select(FederatedRun.DefaultAlgorithms.Hook).OfType<FedLlm.Federation.Personalization.IPersonalizedClientHooks>().FirstOrDefault();
        using var server = new FederationServer(strategy, options, initial, inProcess);
        server.RunAsync().GetAwaiter().GetResult();
        var runOptions = new RunOptions { Federation = options, Personalization = new PersonalizationOptions() };
        var scores = new PersonalEvaluation(model, runOptions, data, initial).Evaluate(server.Global, personal, inProcess.SnapshotState());
        (strategy as IDisposable)?.Dispose();
        AdapterTensors.Dispose(initial);
        return (scores, AdapterTensors.Clone(server.Global));
    }

    public IReadOnlyList<RoundRecord> Metrics() =>
        MetricsJsonl.Read(Path.Combine(Output, "metrics.jsonl"));

    public void Dispose() => temp.Dispose();
}
