using System.Diagnostics;
using FedLlm.Data;
using FedLlm.Evaluation;
using FedLlm.Federation.Strategies;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Tokenization;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Federation.Simulation;

/// <summary>The result of one federated algorithm or baseline on the held-out set.</summary>
public sealed record SimulationOutcome(string Name, EvaluationResult? Final, IReadOnlyList<RoundRecord> Rounds, double Seconds);

/// <summary>
/// Runs federated algorithms and the baselines the literature compares them with on one machine, all from the same
/// initial adapter, the same data split and the same step budget.
/// </summary>
public sealed class SimulationRunner
{
    private readonly LlamaForCausalLM model;
    private readonly ITextTokenizer tokenizer;
    private readonly FederationOptions options;
    private readonly LoraOptions lora;
    private readonly IReadOnlyDictionary<string, Tensor> initialGlobal;
    private readonly HeldOutEvaluation? evaluation;
    private readonly IReadOnlyList<InstructionExample>? heldOut;
    private readonly string? baseModel;
    private readonly RoundTaskEvaluation? roundTask;

    /// <param name="model">The shared base model with LoRA injected; its current adapter is every run's starting point.</param>
    public SimulationRunner(LlamaForCausalLM model, ITextTokenizer tokenizer, PromptTemplate template, FederationOptions options, LoraOptions lora,
        IReadOnlyList<InstructionExample>? heldOut, string? baseModel, RoundTaskEvaluation? roundTask = null)
    {
        options.Validate();
        this.model = model;
        this.tokenizer = tokenizer;
        this.options = options;
        this.lora = lora;
        this.heldOut = heldOut;
        this.baseModel = baseModel;
        this.roundTask = roundTask;
        initialGlobal = AdapterTensors.Snapshot(model);
        evaluation = heldOut is { Count: > 0 } ? new HeldOutEvaluation(model, tokenizer, template, options.MaxSequenceLength) : null;
    }

    EvaluationResult? Evaluate(IReadOnlyDictionary<string, Tensor> adapter)
    {
        if (evaluation is null) return null;
        AdapterTensors.Load(model, adapter);
        var scores = evaluation.Evaluate(heldOut!);
        return new EvaluationResult(scores.Loss, scores.ExactMatch);
    }

    IReadOnlyDictionary<string, double>? EvaluateTask(int round, IReadOnlyDictionary<string, Tensor> global)
    {
        if (roundTask is null || !roundTask.IsDue(round, options.Rounds)) return null;
        AdapterTensors.Load(model, global);
        return roundTask.Evaluate(model, tokenizer);
    }

    /// <summary>One federated algorithm; with <paramref name="resume"/> it continues from the last committed round in <paramref name="output"/>.</summary>
    public async Task<SimulationOutcome> RunFederatedAsync(IFederatedStrategy strategy, IReadOnlyList<IReadOnlyList<SftExample>> shards, string output,
        bool resume, IProgress<RoundRecord>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        using var clients = new InProcessClients(model, options, shards, tokenizer.PadTokenId ?? 0);
        var store = new RunStore(output);
        using var server = new FederationServer(strategy, options, initialGlobal, clients, store, evaluation is null ? null : g => Evaluate(g)!,
            roundTask is null ? null : EvaluateTask);
        if (resume) server.TryResume();
        var reporter = new RoundReporter(r =>
        {
            AdapterIO.Save(Path.Combine(output, "rounds", $"round-{r.Round}"), server.Global, lora, baseModel);
            progress?.Report(r);
        });
        await server.RunAsync(reporter, cancellationToken);
        AdapterIO.Save(Path.Combine(output, "adapter"), server.Global, lora, baseModel);
        var final = server.History.LastOrDefault(r => r.EvalLoss is not null) is { } last ? new EvaluationResult(last.EvalLoss!.Value, last.EvalScore!.Value) : null;
        return new SimulationOutcome(strategy.Name, final, server.History, clock.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Local-only baseline: each client trains alone for rounds × local steps from the same start; the reported score
    /// is the mean over clients (limited to <paramref name="maxClients"/> to bound the time).
    /// </summary>
    public SimulationOutcome RunLocalOnly(IReadOnlyList<IReadOnlyList<SftExample>> shards, int maxClients = int.MaxValue)
    {
        var clock = Stopwatch.StartNew();
        var results = new List<EvaluationResult>();
        for (int i = 0; i < Math.Min(shards.Count, maxClients); i++)
        {
            var adapter = TrainAlone(shards[i], options.Rounds * options.LocalSteps, 101 + i);
            if (Evaluate(adapter) is { } r) results.Add(r);
            AdapterTensors.Dispose(adapter);
        }
        var mean = results.Count == 0 ? null : new EvaluationResult(results.Average(r => r.Loss), results.Average(r => r.Score));
        return new SimulationOutcome("local-only", mean, Array.Empty<RoundRecord>(), clock.Elapsed.TotalSeconds);
    }

    /// <summary>Centralised baseline: the pooled data of all clients, rounds × local steps × clients per round steps.</summary>
    public SimulationOutcome RunCentralized(IReadOnlyList<IReadOnlyList<SftExample>> shards)
    {
        var clock = Stopwatch.StartNew();
        var pooled = shards.SelectMany(s => s).ToList();
        var adapter = TrainAlone(pooled, options.Rounds * options.LocalSteps * Math.Min(options.ClientsPerRound, options.TotalClients), 97);
        var result = Evaluate(adapter);
        AdapterTensors.Dispose(adapter);
        return new SimulationOutcome("centralized", result, Array.Empty<RoundRecord>(), clock.Elapsed.TotalSeconds);
    }

    Dictionary<string, Tensor> TrainAlone(IReadOnlyList<SftExample> data, int steps, long seedOffset)
    {
        AdapterTensors.Load(model, initialGlobal);
        var training = new TrainingOptions
        {
            MaxSteps = steps, BatchSize = options.BatchSize, GradientAccumulationSteps = options.GradientAccumulationSteps,
            // The federated runs' cosine across rounds, stepped per optimizer step here.
            LearningRate = options.LearningRate, MinLearningRate = options.MinLearningRate, Schedule = LearningRateScheduleKind.Cosine,
            MaxGradNorm = options.MaxGradNorm, MaxSequenceLength = options.MaxSequenceLength, Seed = options.Seed + seedOffset,
        };
        using var trainer = new LocalTrainer(model, training, tokenizer.PadTokenId ?? 0);
        trainer.Train(data);
        return AdapterTensors.Snapshot(model);
    }

    sealed class RoundReporter(Action<RoundRecord> report) : IProgress<RoundRecord>
    {
        public void Report(RoundRecord value) => report(value);
    }
}
