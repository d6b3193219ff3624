using System.Diagnostics;
using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>Held-out scores of a global adapter: loss and a task score (exact match for SFT, reward accuracy for DPO),
/// and any further named metrics (DPO's reward margin).</summary>
public sealed record EvaluationResult(double Loss, double Score, IReadOnlyDictionary<string, double>? Metrics = null);

/// <summary>
/// The server's round loop, the one federation core that simulation and deployment both drive:
/// sample clients → plan → send the global adapter → collect updates → aggregate → evaluate → commit.
/// </summary>
public sealed class FederationServer : IDisposable
{
    private readonly IFederatedStrategy strategy;
    private readonly FederationOptions options;
    private readonly IClientExecutor clients;
    private readonly Func<IReadOnlyDictionary<string, Tensor>, EvaluationResult>? evaluate;

    // Benchmark scores of the new global adapter: (round, global) → metrics, or null on rounds it skips.
    private readonly Func<int, IReadOnlyDictionary<string, Tensor>, IReadOnlyDictionary<string, double>?>? taskMetrics;
    private readonly RunStore? store;
    private readonly List<RoundRecord> history = new();
    private Dictionary<string, Tensor> global;

    /// <summary>The round loop of one federated run, starting from a copy of <paramref name="initialGlobal"/> (the
    /// caller keeps its own).</summary>
    /// <param name="strategy">The algorithm: sampling, instructions, aggregation.</param>
    /// <param name="options">Rounds, clients and schedule (validated here).</param>
    /// <param name="initialGlobal">The adapter of round 1; copied.</param>
    /// <param name="clients">Trains the sampled clients (in process, or over the network).</param>
    /// <param name="store">Where each round is committed for resuming; null = not kept.</param>
    /// <param name="evaluate">Scores a global adapter on held-out data, or null for none.</param>
    /// <param name="taskMetrics">Benchmark metrics of a round's global adapter (round, adapter), or null on rounds
    /// without.</param>
    public FederationServer(IFederatedStrategy strategy, FederationOptions options, IReadOnlyDictionary<string, Tensor> initialGlobal,
        IClientExecutor clients, RunStore? store = null, Func<IReadOnlyDictionary<string, Tensor>, EvaluationResult>? evaluate = null,
        Func<int, IReadOnlyDictionary<string, Tensor>, IReadOnlyDictionary<string, double>?>? taskMetrics = null)
    {
        options.Validate();
        this.strategy = strategy;
        this.options = options;
        this.clients = clients;
        this.store = store;
        this.evaluate = evaluate;
        this.taskMetrics = taskMetrics;
        global = AdapterTensors.Clone(initialGlobal);
    }

    /// <summary>The next round to run (0-based); after a resume, the one after the last committed.</summary>
    public int NextRound { get; private set; }

    /// <summary>The current global adapter, owned by the server (copy it to keep it past the next round or
    /// disposal).</summary>
    public IReadOnlyDictionary<string, Tensor> Global => global;

    /// <summary>The records of the rounds run so far (including resumed ones), in order.</summary>
    public IReadOnlyList<RoundRecord> History => history;

    /// <summary>Continues from the store's last committed round, if there is one; returns whether it did.</summary>
    public bool TryResume()
    {
        if (store?.LoadLatest() is not { } committed) return false;
        AdapterTensors.Dispose(global);
        global = committed.Global;
        strategy.LoadState(committed.StrategyState);
        clients.RestoreState(committed.ClientState);
        AdapterTensors.Dispose(committed.StrategyState);
        AdapterTensors.Dispose(committed.ClientState);
        history.Clear();
        history.AddRange(committed.History);
        NextRound = committed.History.Count;
        return true;
    }

    /// <summary>Runs round <see cref="NextRound"/>: samples, trains, aggregates, evaluates when due, commits to the
    /// store, and returns the round's record.</summary>
    public async Task<RoundRecord> RunRoundAsync(CancellationToken cancellationToken = default)
    {
        int round = NextRound;
        var clock = Stopwatch.StartNew();
        double lr = RoundSchedule.LearningRate(round, options);
        var sampled = strategy.SampleClients(round, options);
        var instructions = strategy.ConfigureTrain(round, lr);
        IReadOnlyList<ClientUpdate> updates;
        try
        {
            updates = await clients.TrainRoundAsync(round, sampled, global, instructions, cancellationToken);
        }
        finally
        {
            instructions.DisposeTensors();
        }
        if (updates.Count == 0) throw new InvalidOperationException($"round {RoundRecord.NumberOf(round)}: no client update arrived");
        try
        {
            var updateNorms = updates.ToDictionary(u => u.ClientId, u => AdapterTensors.DistanceNorm(u.Weights, global));
            var aggregated = strategy.Aggregate(round, global, updates);
            var next = AdapterTensors.Clone(aggregated);
            AdapterTensors.Dispose(aggregated);
            double stepNorm = AdapterTensors.DistanceNorm(next, global);
            AdapterTensors.Dispose(global);
            global = next;

            bool evaluateNow = evaluate is not null && options.EvaluateEvery > 0
                && ((round + 1) % options.EvaluateEvery == 0 || round + 1 == options.RoundsToRun);
            var scores = evaluateNow ? evaluate!(global) : null;
            var benchmark = taskMetrics?.Invoke(round, global);
            var federatedEvaluation = await EvaluateOnClientsAsync(round, sampled, cancellationToken);
            long adapterBytes = AdapterTensors.Bytes(global);
            var measured = clients.MeasuredTraffic(round);
            var record = new RoundRecord
            {
                Round = round,
                LearningRate = lr,
                Clients = updates.Select(u => u.ClientId).ToList(),
                ClientLoss = updates.ToDictionary(u => u.ClientId, u => u.Metrics?.GetValueOrDefault("train_loss", double.NaN) ?? double.NaN),
                UpdateNorms = updateNorms,
                GlobalStepNorm = stepNorm,
                EvalLoss = scores?.Loss,
                EvalScore = scores?.Score,
                EvalMetrics = scores?.Metrics,
                TaskMetrics = benchmark,
                FederatedEvaluation = federatedEvaluation,
                BytesSent = measured?.Sent ?? adapterBytes * sampled.Count,
                BytesReceived = measured?.Received ?? updates.Sum(u => u.Bytes),
                Seconds = clock.Elapsed.TotalSeconds,
                ResidentBytes = Runtime.TorchRuntime.ResidentBytes(),
            };
            record = strategy.Annotate(record);
            history.Add(record);
            NextRound = round + 1;
            store?.Commit(global, strategy.State, clients.SnapshotState(), history);
            return record;
        }
        finally
        {
            clients.Release(updates);
        }
    }

    /// <summary>Federated evaluation of the new global adapter when the strategy asks for it this round: the round's
    /// clients score it on their own data and the strategy combines their metrics; null when it does not ask, or no
    /// client could evaluate.</summary>
    async Task<IReadOnlyDictionary<string, double>?> EvaluateOnClientsAsync(int round, IReadOnlyList<int> sampled, CancellationToken cancellationToken)
    {
        if (strategy.ConfigureEvaluate(round) is not { } instructions) return null;
        try
        {
            var results = await clients.EvaluateRoundAsync(round, sampled, global, instructions, cancellationToken);
            return results.Count == 0 ? null : strategy.AggregateEvaluate(round, results);
        }
        finally
        {
            instructions.DisposeTensors();
        }
    }

    /// <summary>Runs the remaining rounds, reporting each.</summary>
    public async Task RunAsync(IProgress<RoundRecord>? progress = null, CancellationToken cancellationToken = default)
    {
        while (NextRound < options.RoundsToRun)
        {
            cancellationToken.ThrowIfCancellationRequested();
            // Not `progress?.Report(await RunRoundAsync())`: with no progress, ?. skips evaluating the argument, so no
            // round would ever run and the loop would spin.
            var record = await RunRoundAsync(cancellationToken);
            progress?.Report(record);
        }
    }

    /// <summary>Frees the global adapter.</summary>
    public void Dispose() => AdapterTensors.Dispose(global);
}
