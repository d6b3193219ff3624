using System.Diagnostics;
using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Federation.Async;

/// <summary>
/// FedBuff over clients that finish in real time (<c>fedllm server</c>): publishes version v to every idle client,
/// takes updates in the order they arrive, each tagged with its staleness τ = v − (the version it was trained from), and
/// once K are in steps x ← x + η_g·(1/K)·Σ s(τ_i)·Δ_i (<see cref="FedBuffAggregation"/>), commits version v + 1 through
/// the <see cref="RunStore"/> (one line of metrics.jsonl) and publishes it. R = federation.rounds versions in all.
/// </summary>
/// <remarks>
/// <para>Nguyen et al., "Federated Learning with Buffered Asynchronous Aggregation", AISTATS 2022 (arXiv:2106.06639),
/// Algorithm 1, with the pool (<see cref="IAsyncClientPool"/>) as its clients. Beside <see cref="BufferedAsyncServer"/>
/// rather than inside it: that loop owns a virtual clock and trains a task when it starts, so its order of events is a
/// function of the seed and it commits the tasks in flight with their deltas; here the order is the network's, and what
/// is in flight lives on the clients. Both share the pure parts: <see cref="FedBuffAggregation"/>, the
/// <see cref="IStalenessWeight"/> functions, <see cref="AsyncOptions"/>, the record (<see cref="RoundAsync"/>) and
/// <see cref="RunStore"/>.</para>
/// <para>Crash safety: only versions are committed. Updates buffered but not yet aggregated are lost with the process,
/// and their clients are given a task on the newest committed version after the restart.</para>
/// <para>An update that was within async.max_staleness when it arrived but waited in the buffer past it (more than K
/// arrived before the aggregation) is dropped at the aggregation with a log line.</para>
/// </remarks>
public sealed class RealTimeBufferedAsyncServer : IDisposable
{
    readonly AsyncOptions asyncOptions;
    readonly FederationOptions options;
    readonly IAsyncClientPool clients;
    readonly RunStore? store;
    readonly Func<IReadOnlyDictionary<string, Tensor>, EvaluationResult>? evaluate;
    readonly Func<int, IReadOnlyDictionary<string, Tensor>, IReadOnlyDictionary<string, double>?>? taskMetrics;
    readonly Action<string>? log;
    readonly int bufferSize;
    readonly IStalenessWeight staleness;
    readonly List<RoundRecord> history = new();
    Dictionary<string, Tensor> global;

    /// <param name="asyncOptions">Buffer size K, staleness weight, its bound and the server learning rate (speeds and
    /// concurrency are the simulation's and are not used).</param>
    /// <param name="options">The federation: versions (rounds) and the learning-rate schedule.</param>
    /// <param name="initialGlobal">Version 0's adapter; copied, so the caller keeps ownership.</param>
    /// <param name="clients">The pool the versions are published to and updates taken from.</param>
    /// <param name="store">Commits every version for resume; null = no commits.</param>
    /// <param name="evaluate">Held-out scores of a global adapter, or null.</param>
    /// <param name="taskMetrics">Benchmark scores of a global adapter (version index, global), or null.</param>
    /// <param name="log">Where dropped updates are reported, or null.</param>
    /// <exception cref="ArgumentException">The async options do not fit the federation (all problems listed).</exception>
    public RealTimeBufferedAsyncServer(AsyncOptions asyncOptions, FederationOptions options, IReadOnlyDictionary<string, Tensor> initialGlobal,
        IAsyncClientPool clients, RunStore? store = null, Func<IReadOnlyDictionary<string, Tensor>, EvaluationResult>? evaluate = null,
        Func<int, IReadOnlyDictionary<string, Tensor>, IReadOnlyDictionary<string, double>?>? taskMetrics = null, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(asyncOptions);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(clients);
        options.Validate();
        if (asyncOptions.Failures(options) is { Count: > 0 } failures) throw new ArgumentException(string.Join("; ", failures), nameof(asyncOptions));
        this.asyncOptions = asyncOptions;
        this.options = options;
        this.clients = clients;
        this.store = store;
        this.evaluate = evaluate;
        this.taskMetrics = taskMetrics;
        this.log = log;
        bufferSize = asyncOptions.BufferSizeFor(options);
        staleness = asyncOptions.CreateWeight();
        global = AdapterTensors.Clone(initialGlobal);
    }

    /// <summary>Versions committed so far (the newest global's number; 0 = the initial adapter).</summary>
    public int Version => history.Count;

    /// <summary>The newest committed global adapter (owned by the server).</summary>
    public IReadOnlyDictionary<string, Tensor> Global => global;

    /// <summary>One record per committed version, in order.</summary>
    public IReadOnlyList<RoundRecord> History => history;

    /// <summary>Continues from the store's last committed version, if there is one; returns whether it did.</summary>
    public bool TryResume()
    {
        if (store?.LoadLatest() is not { } committed) return false;
        if (history.Count > 0) throw new InvalidOperationException("resume before the first version");
        AdapterTensors.Dispose(global);
        global = committed.Global;
        clients.RestoreState(committed.ClientState);
        AdapterTensors.Dispose(committed.ClientState);
        AdapterTensors.Dispose(committed.StrategyState);
        history.AddRange(committed.History);
        return true;
    }

    /// <summary>Runs until federation.rounds versions (or the stop after fewer) are committed, reporting each.</summary>
    public async Task RunAsync(IProgress<RoundRecord>? progress = null, CancellationToken cancellationToken = default)
    {
        while (Version < options.RoundsToRun)
        {
            var record = await RunVersionAsync(cancellationToken);
            progress?.Report(record);
        }
    }

    /// <summary>Publishes the newest version, waits for K updates within the staleness bound, aggregates them into the
    /// next version and commits it.</summary>
    public async Task<RoundRecord> RunVersionAsync(CancellationToken cancellationToken = default)
    {
        int version = Version;
        var clock = Stopwatch.StartNew();
        var instructions = new ClientInstructions(version, RoundSchedule.LearningRate(version, options));
        clients.Publish(version, global, instructions);
        var buffer = new List<(ArrivedUpdate Update, int Staleness)>();
        try
        {
            while (buffer.Count < bufferSize)
            {
                foreach (var update in await clients.TakeAsync(bufferSize - buffer.Count, cancellationToken))
                {
                    int tau = version - update.BaseVersion;
                    if (tau < 0)
                    {
                        AdapterTensors.Dispose(update.Delta);
                        throw new InvalidOperationException($"client {update.ClientId}'s update names version {update.BaseVersion}, newer than the newest ({version})");
                    }
                    if (asyncOptions.MaxStaleness is { } most && tau > most)
                    {
                        log?.Invoke($"version {RoundRecord.NumberOf(version)}: update from client {update.ClientId} (trained from version {update.BaseVersion}) " +
                            $"is {tau} versions stale after waiting in the buffer; async.max_staleness is {most}: dropped");
                        AdapterTensors.Dispose(update.Delta);
                        continue;
                    }
                    buffer.Add((update, tau));
                }
            }
            return Aggregate(version, buffer, clock);
        }
        finally
        {
            foreach (var (update, _) in buffer) AdapterTensors.Dispose(update.Delta);
        }
    }

    RoundRecord Aggregate(int index, IReadOnlyList<(ArrivedUpdate Update, int Staleness)> buffer, Stopwatch clock)
    {
        // Ids unique per update (a client may appear twice in one buffer); ordinal order = arrival order.
        var deltas = buffer.Select((b, i) => new ClientTensors($"update-{i:D6}-{b.Update.ClientId}", b.Update.Delta)).ToList();
        var weights = buffer.Select(b => staleness.Weight(b.Staleness)).ToList();
        var next = FedBuffAggregation.Apply(global, deltas, weights, asyncOptions.ServerLearningRate);
        double stepNorm = AdapterTensors.DistanceNorm(next, global);
        AdapterTensors.Dispose(global);
        global = next;

        int number = index + 1;
        bool evaluateNow = evaluate is not null && options.EvaluateEvery > 0 && (number % options.EvaluateEvery == 0 || number == options.RoundsToRun);
        var scores = evaluateNow ? evaluate!(global) : null;
        var benchmark = taskMetrics?.Invoke(index, global);
        var updates = buffer.Select((b, i) => new BufferedUpdate(b.Update.ClientId, b.Update.BaseVersion, b.Staleness, weights[i], b.Update.StartedAt,
            b.Update.FinishedAt, b.Update.TrainLoss, b.Update.DeltaNorm)).ToList();
        var record = new RoundRecord
        {
            Round = index,
            LearningRate = RoundSchedule.LearningRate(index, options),
            Clients = updates.Select(u => u.Client).ToList(),
            ClientLoss = BufferedUpdate.MeanLossPerClient(updates),
            UpdateNorms = BufferedUpdate.MeanNormPerClient(updates),
            GlobalStepNorm = stepNorm,
            EvalLoss = scores?.Loss,
            EvalScore = scores?.Score,
            EvalMetrics = scores?.Metrics,
            TaskMetrics = benchmark,
            BytesSent = clients.BytesSent(index) ?? 0,
            BytesReceived = buffer.Sum(b => b.Update.Bytes),
            Seconds = clock.Elapsed.TotalSeconds,
            ResidentBytes = Runtime.TorchRuntime.ResidentBytes(),
            Async = new RoundAsync(bufferSize, asyncOptions.ServerLearningRate, staleness.Name, updates),
        };
        history.Add(record);
        store?.Commit(global, new Dictionary<string, Tensor>(), clients.SnapshotState(), history);
        return record;
    }

    /// <summary>Frees the global adapter.</summary>
    public void Dispose() => AdapterTensors.Dispose(global);
}
