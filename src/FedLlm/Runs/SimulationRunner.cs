using System.Diagnostics;
using FedLlm.Data;
using FedLlm.Evaluation;
using FedLlm.Federation;
using FedLlm.Evaluation.Metrics;
using FedLlm.Federation.Async;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Tokenization;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Runs;

/// <summary>The result of one federated algorithm or baseline on the held-out set.</summary>
/// <param name="Rounds">The federated rounds (a baseline trained as a 1-client federation has its own; one that trains
/// each client alone keeps them per client in <see cref="Clients"/>).</param>
/// <param name="Name">The algorithm's or baseline's name ("fedavg", "local" …).</param>
/// <param name="Final">The final held-out score, or null when the run was not evaluated.</param>
/// <param name="Seconds">Wall-clock seconds the run took.</param>
public sealed record RunOutcome(string Name, EvaluationResult? Final, IReadOnlyList<RoundRecord> Rounds, double Seconds)
{
    /// <summary>Whether this is a baseline (a reference for the federated runs, not a federated algorithm).</summary>
    public bool IsBaseline { get; init; }

    /// <summary>A baseline that trains every client alone: each client's outcome in client order; <see cref="Final"/> is
    /// their mean weighted by example count.</summary>
    public IReadOnlyList<ClientOutcome>? Clients { get; init; }

    /// <summary>Each client's scores on its own held-out split (YAML <c>personalization:</c>), or null.</summary>
    public PersonalScores? Personal { get; init; }

    /// <summary>The simulated attack the run ran under (YAML <c>attack:</c>), or null.</summary>
    public RunAttack? Attack { get; init; }
}

/// <summary>A simulated attack: its kind, the configured fraction and the clients chosen to attack.</summary>
public sealed record RunAttack(string Kind, double Fraction, IReadOnlyList<string> Attackers);

/// <summary>One client's part of a baseline that trains every client alone.</summary>
public sealed record ClientOutcome(int Client, int Examples, RunOutcome Outcome);

/// <summary>
/// Runs federated algorithms and the baselines the literature compares them with on one machine, all from the same
/// initial adapter, the same data split and the same step budget, for any local objective (instruction tuning or DPO).
/// </summary>
public sealed class SimulationRunner
{
    private readonly LlamaForCausalLM model;
    private readonly FederationOptions options;
    private readonly LoraOptions lora;
    private readonly IReadOnlyDictionary<string, Tensor> initialGlobal;
    private readonly Func<EvaluationResult>? evaluateLoadedAdapter;
    private readonly string? baseModel;
    private readonly int padTokenId;
    private readonly RoundTaskEvaluation? roundTask;
    private readonly ITextTokenizer? tokenizer;
    private readonly AlgorithmRegistry algorithms;

    /// <param name="model">The shared base model with LoRA injected; its current adapter is every run's starting point.</param>
    /// <param name="evaluateLoadedAdapter">Scores the adapter currently loaded in <paramref name="model"/> on held-out data
    /// (held-out loss and exact match for SFT; DPO loss, reward accuracy and margin for DPO), or null for no evaluation.</param>
    /// <param name="roundTask">A benchmark task scored on the global adapter every few rounds (needs <paramref name="tokenizer"/>).</param>
    /// <param name="options">Rounds, clients, local training and schedule of every run; validated here.</param>
    /// <param name="lora">The adapter's shape, written beside every saved adapter (adapter_config.json).</param>
    /// <param name="baseModel">The base model recorded in saved adapters (adapter_config.json's
    /// base_model_name_or_path); null = none.</param>
    /// <param name="padTokenId">The tokenizer's padding token id, for batching.</param>
    /// <param name="tokenizer">The tokenizer, for <paramref name="roundTask"/>; null when there is none.</param>
    /// <param name="algorithms">Algorithms and client hooks by name; null = the seven built-in ones.</param>
    public SimulationRunner(LlamaForCausalLM model, FederationOptions options, LoraOptions lora, Func<EvaluationResult>? evaluateLoadedAdapter,
        string? baseModel, int padTokenId, RoundTaskEvaluation? roundTask = null, ITextTokenizer? tokenizer = null, AlgorithmRegistry? algorithms = null)
    {
        this.algorithms = algorithms ?? Federation.Strategies.StrategyFactory.BuiltIn;
        options.Validate();
        this.model = model;
        this.options = options;
        this.lora = lora;
        this.baseModel = baseModel;
        this.padTokenId = padTokenId;
        this.evaluateLoadedAdapter = evaluateLoadedAdapter;
        if (roundTask is not null && tokenizer is null) throw new ArgumentException("a round task needs the tokenizer", nameof(tokenizer));
        this.roundTask = roundTask;
        this.tokenizer = tokenizer;
        initialGlobal = AdapterTensors.Snapshot(model);
    }

    /// <summary>Instruction tuning, evaluated by held-out loss and exact match on <paramref name="heldOut"/>.</summary>
    public SimulationRunner(LlamaForCausalLM model, ITextTokenizer tokenizer, PromptTemplate template, FederationOptions options, LoraOptions lora,
        IReadOnlyList<InstructionExample>? heldOut, string? baseModel, RoundTaskEvaluation? roundTask = null)
        : this(model, options, lora, InstructionEvaluator(model, tokenizer, template, options, heldOut), baseModel, tokenizer.PadTokenId ?? 0, roundTask, tokenizer)
    {
    }

    /// <summary>The held-out metric name of macro-F1 over the reference answers (instruction tuning).</summary>
    public const string MacroF1Metric = "macro_f1";

    /// <summary>Held-out loss, exact match and macro-F1 of the adapter loaded in <paramref name="model"/>, or null without held-out examples.</summary>
    public static Func<EvaluationResult>? InstructionEvaluator(LlamaForCausalLM model, ITextTokenizer tokenizer, PromptTemplate template,
        FederationOptions options, IReadOnlyList<InstructionExample>? heldOut)
    {
        if (heldOut is not { Count: > 0 }) return null;
        var evaluation = new HeldOutEvaluation(model, tokenizer, template, options.MaxSequenceLength);
        var references = heldOut.Select(e => HeldOutEvaluation.NormalizeAnswer(e.Response)).ToList();
        return () =>
        {
            var scores = evaluation.Evaluate(heldOut);
            // Macro-F1 over the held-out answers: a model that always gives the most common answer scores the floor
            // in exact match but only about 1/k here.
            var metrics = new Dictionary<string, double> { [MacroF1Metric] = ClassificationMetrics.MacroF1OverTrueLabels(references, scores.Answers) };
            return new EvaluationResult(scores.Loss, scores.ExactMatch, metrics);
        };
    }

    EvaluationResult? Evaluate(IReadOnlyDictionary<string, Tensor> adapter)
    {
        if (evaluateLoadedAdapter is null) return null;
        AdapterTensors.Load(model, adapter);
        return evaluateLoadedAdapter();
    }

    IReadOnlyDictionary<string, double>? EvaluateTask(int round, IReadOnlyDictionary<string, Tensor> global)
    {
        if (roundTask is null || !roundTask.IsDue(round, options.RoundsToRun)) return null;
        AdapterTensors.Load(model, global);
        return roundTask.Evaluate(model, tokenizer!);
    }

    /// <summary>One federated algorithm on instruction shards.</summary>
    public Task<RunOutcome> RunFederatedAsync(IFederatedStrategy strategy, IReadOnlyList<IReadOnlyList<SftExample>> shards, string output,
        bool resume, IProgress<RoundRecord>? progress = null, CancellationToken cancellationToken = default) =>
        RunFederatedAsync(strategy, Sft(shards), output, resume, progress, cancellationToken);

    /// <summary>One federated algorithm with in-process clients; with <paramref name="resume"/> it continues from the last
    /// committed round in <paramref name="output"/>.</summary>
    public async Task<RunOutcome> RunFederatedAsync(IFederatedStrategy strategy, IReadOnlyList<IClientDataset> shards, string output,
        bool resume, IProgress<RoundRecord>? progress = null, CancellationToken cancellationToken = default)
    {
        using var clients = new InProcessClients(model, options, shards, padTokenId, algorithms);
        return await RunFederatedAsync(strategy, ClientDecorator?.Invoke(clients) ?? clients, options, output, resume, progress, cancellationToken);
    }

    /// <summary>One federated algorithm with any clients (in process, or behind the network): the one round loop of
    /// simulation and deployment, with its outputs (metrics.jsonl and state-N/ through the RunStore, rounds/round-N/ and
    /// adapter/ in PEFT format).</summary>
    public Task<RunOutcome> RunFederatedAsync(IFederatedStrategy strategy, IClientExecutor clients, string output,
        bool resume, IProgress<RoundRecord>? progress = null, CancellationToken cancellationToken = default) =>
        RunFederatedAsync(strategy, clients, options, output, resume, progress, cancellationToken);

    async Task<RunOutcome> RunFederatedAsync(IFederatedStrategy strategy, IClientExecutor clients, FederationOptions federation, string output,
        bool resume, IProgress<RoundRecord>? progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var store = new RunStore(output);
        using var server = new FederationServer(strategy, federation, initialGlobal, clients, store, evaluateLoadedAdapter is null ? null : g => Evaluate(g)!,
            roundTask is null ? null : EvaluateTask);
        if (resume) Resumed = server.TryResume();
        var reporter = new RoundReporter(r =>
        {
            AdapterIO.Save(Path.Combine(output, "rounds", $"round-{r.Number}"), server.Global, lora, baseModel);
            progress?.Report(r);
        });
        await server.RunAsync(reporter, cancellationToken);
        AdapterIO.Save(Path.Combine(output, "adapter"), server.Global, lora, baseModel);
        var final = server.History.LastOrDefault(r => r.EvalLoss is not null) is { } last
            ? new EvaluationResult(last.EvalLoss!.Value, last.EvalScore!.Value, last.EvalMetrics)
            : null;
        return new RunOutcome(strategy.Name, final, server.History, clock.Elapsed.TotalSeconds);
    }

    /// <summary>FedBuff with in-process clients on a virtual clock (<see cref="BufferedAsyncServer"/>), with the outputs of a
    /// federated run: one committed version per line of metrics.jsonl, rounds/round-N for version N, adapter/.</summary>
    public async Task<RunOutcome> RunBufferedAsync(AsyncOptions asyncOptions, IReadOnlyList<IClientDataset> shards, string output, bool resume,
        IProgress<RoundRecord>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        using var inProcess = new InProcessClients(model, options, shards, padTokenId, algorithms);
        var clients = ClientDecorator?.Invoke(inProcess) ?? inProcess;
        using var server = new BufferedAsyncServer(asyncOptions, options, initialGlobal, clients, new RunStore(output),
            evaluateLoadedAdapter is null ? null : g => Evaluate(g)!, roundTask is null ? null : EvaluateTask);
        if (resume) Resumed = server.TryResume();
        await server.RunAsync(new RoundReporter(r =>
        {
            AdapterIO.Save(Path.Combine(output, "rounds", $"round-{r.Number}"), server.Global, lora, baseModel);
            progress?.Report(r);
        }), cancellationToken);
        AdapterIO.Save(Path.Combine(output, "adapter"), server.Global, lora, baseModel);
        var final = server.History.LastOrDefault(r => r.EvalLoss is not null) is { } last
            ? new EvaluationResult(last.EvalLoss!.Value, last.EvalScore!.Value, last.EvalMetrics)
            : null;
        return new RunOutcome(BufferedAsyncServer.AlgorithmName, final, server.History, clock.Elapsed.TotalSeconds);
    }

    /// <summary>FedBuff over clients that finish in real time (<see cref="RealTimeBufferedAsyncServer"/>: the network
    /// server), with the outputs of a federated run: one committed version per line of metrics.jsonl, rounds/round-N for
    /// version N, adapter/.</summary>
    public async Task<RunOutcome> RunBufferedAsync(AsyncOptions asyncOptions, IAsyncClientPool clients, string output, bool resume,
        IProgress<RoundRecord>? progress = null, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        using var server = new RealTimeBufferedAsyncServer(asyncOptions, options, initialGlobal, clients, new RunStore(output),
            evaluateLoadedAdapter is null ? null : g => Evaluate(g)!, roundTask is null ? null : EvaluateTask, log);
        if (resume) Resumed = server.TryResume();
        await server.RunAsync(new RoundReporter(r =>
        {
            AdapterIO.Save(Path.Combine(output, "rounds", $"round-{r.Number}"), server.Global, lora, baseModel);
            progress?.Report(r);
        }), cancellationToken);
        AdapterIO.Save(Path.Combine(output, "adapter"), server.Global, lora, baseModel);
        var final = server.History.LastOrDefault(r => r.EvalLoss is not null) is { } last
            ? new EvaluationResult(last.EvalLoss!.Value, last.EvalScore!.Value, last.EvalMetrics)
            : null;
        return new RunOutcome(BufferedAsyncServer.AlgorithmName, final, server.History, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Wraps the in-process clients of each federated run (e.g. a dashboard's monitor); null = none.</summary>
    public Func<IClientExecutor, IClientExecutor>? ClientDecorator { get; set; }

    /// <summary>Whether the last <see cref="RunFederatedAsync(IFederatedStrategy, IClientExecutor, string, bool, IProgress{RoundRecord}?, CancellationToken)"/>
    /// with resume continued from a committed round.</summary>
    public bool Resumed { get; private set; }

    /// <summary>
    /// Local-only baseline: every client alone, each as a 1-client federation through the federated clients' own code
    /// (same rounds × local steps, a fresh optimizer each round at the round's rate of the cosine, same hooks-free
    /// FedAvg round loop), into <paramref name="output"/>/client-i. The score is the mean over all clients weighted by
    /// their example count, on the same held-out set as the federated runs.
    /// </summary>
    /// <param name="progress">Told each committed round with the client's index.</param>
    /// <param name="shards">Every client's training data, in client order.</param>
    /// <param name="output">The baseline's folder.</param>
    /// <param name="resume">Continue each client from its last committed round, if any.</param>
    /// <param name="cancellationToken">Stops the baseline after its current step; committed rounds stay on
    /// disk.</param>
    public async Task<RunOutcome> RunLocalOnlyAsync(IReadOnlyList<IClientDataset> shards, string output, bool resume,
        Action<int, RoundRecord>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        var alone = OneClient(options.LocalSteps);
        var clients = new List<ClientOutcome>(shards.Count);
        for (int i = 0; i < shards.Count; i++)
        {
            int client = i;
            using var executor = new InProcessClients(model, alone, [shards[i]], padTokenId, algorithms);
            var outcome = await RunFederatedAsync(new FedAvg(), executor, alone, Path.Combine(output, InProcessClients.ClientId(i)), resume,
                progress is null ? null : new RoundReporter(r => progress(client, r)), cancellationToken);
            clients.Add(new ClientOutcome(i, shards[i].Count, outcome with { Name = $"local-only {InProcessClients.ClientId(i)}", IsBaseline = true }));
        }
        return new RunOutcome("local-only", BaselineMath.WeightedMean(clients), [], clock.Elapsed.TotalSeconds) { IsBaseline = true, Clients = clients };
    }

    /// <summary>
    /// Centralised baseline: the pooled data of all clients as a 1-client federation with local steps × clients per
    /// round steps per round (the federated runs' examples per round), into <paramref name="output"/>.
    /// </summary>
    public async Task<RunOutcome> RunCentralizedAsync(IClientDataset pooled, string output, bool resume, IProgress<RoundRecord>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var alone = OneClient(options.LocalSteps * Math.Min(options.ClientsPerRound, options.TotalClients));
        using var executor = new InProcessClients(model, alone, [pooled], padTokenId, algorithms);
        var outcome = await RunFederatedAsync(new FedAvg(), executor, alone, output, resume, progress, cancellationToken);
        return outcome with { Name = "centralized", IsBaseline = true };
    }

    /// <summary>A 1-client federation with the run's rounds, schedule and seed and <paramref name="localSteps"/> per round.</summary>
    FederationOptions OneClient(int localSteps) => options with { TotalClients = 1, ClientsPerRound = 1, LocalSteps = localSteps };

    /// <summary>
    /// Local-only with the continuous recipe (a separately labelled baseline): each client trains rounds × local steps
    /// with one AdamW and a per-step cosine, no restarts; mean over all clients weighted by example count.
    /// </summary>
    public RunOutcome RunLocalContinuous(IReadOnlyList<IClientDataset> shards)
    {
        var clock = Stopwatch.StartNew();
        var clients = new List<ClientOutcome>(shards.Count);
        for (int i = 0; i < shards.Count; i++)
        {
            var one = Stopwatch.StartNew();
            var adapter = TrainAlone(shards[i], options.Rounds * options.LocalSteps, 101 + i);
            var result = Evaluate(adapter);
            AdapterTensors.Dispose(adapter);
            clients.Add(new ClientOutcome(i, shards[i].Count, new RunOutcome($"local-continuous {InProcessClients.ClientId(i)}", result, [], one.Elapsed.TotalSeconds)
                { IsBaseline = true }));
        }
        return new RunOutcome("local-continuous", BaselineMath.WeightedMean(clients), [], clock.Elapsed.TotalSeconds) { IsBaseline = true, Clients = clients };
    }

    /// <summary>Centralised with the continuous recipe: the pooled data, rounds × local steps × clients per round steps of
    /// one AdamW with a per-step cosine (a separately labelled baseline).</summary>
    public RunOutcome RunCentralContinuous(IClientDataset pooled)
    {
        var clock = Stopwatch.StartNew();
        var adapter = TrainAlone(pooled, options.Rounds * options.LocalSteps * Math.Min(options.ClientsPerRound, options.TotalClients), 97);
        var result = Evaluate(adapter);
        AdapterTensors.Dispose(adapter);
        return new RunOutcome("central-continuous", result, Array.Empty<RoundRecord>(), clock.Elapsed.TotalSeconds) { IsBaseline = true };
    }

    Dictionary<string, Tensor> TrainAlone(IClientDataset data, int steps, long seedOffset)
    {
        AdapterTensors.Load(model, initialGlobal);
        var training = new TrainingOptions
        {
            MaxSteps = steps, BatchSize = options.BatchSize, GradientAccumulationSteps = options.GradientAccumulationSteps,
            // The federated runs' cosine across rounds, stepped per optimizer step here.
            LearningRate = options.LearningRate, MinLearningRate = options.MinLearningRate, Schedule = LearningRateScheduleKind.Cosine,
            MaxGradNorm = options.MaxGradNorm, MaxSequenceLength = options.MaxSequenceLength, Seed = options.Seed + seedOffset,
        };
        using var run = data.StartRun(model, training);
        run.Train();
        return AdapterTensors.Snapshot(model);
    }

    IReadOnlyList<IClientDataset> Sft(IReadOnlyList<IReadOnlyList<SftExample>> shards) =>
        shards.Select(s => (IClientDataset)new SftClientDataset(s, padTokenId)).ToList();

    sealed class RoundReporter(Action<RoundRecord> report) : IProgress<RoundRecord>
    {
        public void Report(RoundRecord value) => report(value);
    }
}
