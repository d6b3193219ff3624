using System.Diagnostics;
using FedLlm.Data;
using FedLlm.Evaluation;
using FedLlm.Federation;
using FedLlm.Federation.Simulation;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Tokenization;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Runs;

/// <summary>The result of one federated algorithm or baseline on the held-out set.</summary>
public sealed record RunOutcome(string Name, EvaluationResult? Final, IReadOnlyList<RoundRecord> Rounds, double Seconds)
{
    /// <summary>Each client's scores on its own held-out split (YAML <c>personalization:</c>), or null.</summary>
    public PersonalScores? Personal { get; init; }
}

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

    /// <summary>Held-out loss and exact match of the adapter loaded in <paramref name="model"/>, or null without held-out examples.</summary>
    public static Func<EvaluationResult>? InstructionEvaluator(LlamaForCausalLM model, ITextTokenizer tokenizer, PromptTemplate template,
        FederationOptions options, IReadOnlyList<InstructionExample>? heldOut)
    {
        if (heldOut is not { Count: > 0 }) return null;
        var evaluation = new HeldOutEvaluation(model, tokenizer, template, options.MaxSequenceLength);
        return () =>
        {
            var scores = evaluation.Evaluate(heldOut);
            return new EvaluationResult(scores.Loss, scores.ExactMatch);
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
        return await RunFederatedAsync(strategy, clients, output, resume, progress, cancellationToken);
    }

    /// <summary>One federated algorithm with any clients (in process, or behind the network): the one round loop of
    /// simulation and deployment, with its outputs (metrics.jsonl and state-N/ through the RunStore, rounds/round-N/ and
    /// adapter/ in PEFT format).</summary>
    public async Task<RunOutcome> RunFederatedAsync(IFederatedStrategy strategy, IClientExecutor clients, string output,
        bool resume, IProgress<RoundRecord>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        var store = new RunStore(output);
        using var server = new FederationServer(strategy, options, initialGlobal, clients, store, evaluateLoadedAdapter is null ? null : g => Evaluate(g)!,
            roundTask is null ? null : EvaluateTask);
        if (resume) Resumed = server.TryResume();
        var reporter = new RoundReporter(r =>
        {
            AdapterIO.Save(Path.Combine(output, "rounds", $"round-{r.Round}"), server.Global, lora, baseModel);
            progress?.Report(r);
        });
        await server.RunAsync(reporter, cancellationToken);
        AdapterIO.Save(Path.Combine(output, "adapter"), server.Global, lora, baseModel);
        var final = server.History.LastOrDefault(r => r.EvalLoss is not null) is { } last
            ? new EvaluationResult(last.EvalLoss!.Value, last.EvalScore!.Value, last.EvalMetrics)
            : null;
        return new RunOutcome(strategy.Name, final, server.History, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Whether the last <see cref="RunFederatedAsync(IFederatedStrategy, IClientExecutor, string, bool, IProgress{RoundRecord}?, CancellationToken)"/>
    /// with resume continued from a committed round.</summary>
    public bool Resumed { get; private set; }

    /// <summary>Local-only baseline on instruction shards.</summary>
    public RunOutcome RunLocalOnly(IReadOnlyList<IReadOnlyList<SftExample>> shards, int maxClients = int.MaxValue) => RunLocalOnly(Sft(shards), maxClients);

    /// <summary>
    /// Local-only baseline: each client trains alone for rounds × local steps from the same start; the reported score
    /// is the mean over clients (limited to <paramref name="maxClients"/> to bound the time).
    /// </summary>
    public RunOutcome RunLocalOnly(IReadOnlyList<IClientDataset> shards, int maxClients = int.MaxValue)
    {
        var clock = Stopwatch.StartNew();
        var results = new List<EvaluationResult>();
        for (int i = 0; i < Math.Min(shards.Count, maxClients); i++)
        {
            var adapter = TrainAlone(shards[i], options.Rounds * options.LocalSteps, 101 + i);
            if (Evaluate(adapter) is { } r) results.Add(r);
            AdapterTensors.Dispose(adapter);
        }
        return new RunOutcome("local-only", Mean(results), Array.Empty<RoundRecord>(), clock.Elapsed.TotalSeconds);
    }

    /// <summary>Centralised baseline on pooled instruction shards.</summary>
    public RunOutcome RunCentralized(IReadOnlyList<IReadOnlyList<SftExample>> shards) =>
        RunCentralized(new SftClientDataset(shards.SelectMany(s => s).ToList(), padTokenId));

    /// <summary>Centralised baseline: the pooled data of all clients, rounds × local steps × clients per round steps.</summary>
    public RunOutcome RunCentralized(IClientDataset pooled)
    {
        var clock = Stopwatch.StartNew();
        var adapter = TrainAlone(pooled, options.Rounds * options.LocalSteps * Math.Min(options.ClientsPerRound, options.TotalClients), 97);
        var result = Evaluate(adapter);
        AdapterTensors.Dispose(adapter);
        return new RunOutcome("centralized", result, Array.Empty<RoundRecord>(), clock.Elapsed.TotalSeconds);
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

    /// <summary>The mean of each score over clients (metrics present in every result are averaged too).</summary>
    static EvaluationResult? Mean(IReadOnlyList<EvaluationResult> results)
    {
        if (results.Count == 0) return null;
        var keys = results.Select(r => r.Metrics?.Keys ?? Enumerable.Empty<string>()).Aggregate((a, b) => a.Intersect(b)).ToList();
        var metrics = keys.Count == 0 ? null : keys.ToDictionary(k => k, k => results.Average(r => r.Metrics![k]));
        return new EvaluationResult(results.Average(r => r.Loss), results.Average(r => r.Score), metrics);
    }

    IReadOnlyList<IClientDataset> Sft(IReadOnlyList<IReadOnlyList<SftExample>> shards) =>
        shards.Select(s => (IClientDataset)new SftClientDataset(s, padTokenId)).ToList();

    sealed class RoundReporter(Action<RoundRecord> report) : IProgress<RoundRecord>
    {
        public void Report(RoundRecord value) => report(value);
    }
}
