using System.Diagnostics;
using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Federation.Async;

/// <summary>
/// The asynchronous loop beside <see cref="FederationServer"/>: buffered asynchronous aggregation (FedBuff). Up to
/// <c>concurrency</c> clients train at once, each from the newest global version when its task starts; every arriving
/// update is tagged with its staleness τ (versions committed since its base version) and buffered; once K are in, the
/// server steps x ← x + η_g·(1/K)·Σ s(τ_i)·Δ_i (<see cref="FedBuffAggregation"/>), commits the new version and frees
/// the buffer. Time is virtual (<see cref="VirtualClock{T}"/>): a task of client i takes f_i × local steps units, so the
/// effect of slow clients is measurable on one machine and every run is a function of its seed.
/// </summary>
/// <remarks>
/// <para>Nguyen et al., "Federated Learning with Buffered Asynchronous Aggregation", AISTATS 2022 (arXiv:2106.06639),
/// Algorithm 1. FedBuff is not an <see cref="IFederatedStrategy"/>: a strategy's Aggregate maps one round's updates, all
/// computed from the same global, to the next global, while FedBuff's updates come from different versions and only their
/// deltas Δ_i = y_i − x_{v_i} can be combined. Clients train plainly (no client hooks).</para>
/// <para>Simulation: a client's task is trained when it starts (in process, on the global it starts from) and its delta
/// is held until the clock reaches its finishing time. Clients finishing at the same virtual instant are all taken before
/// any new task starts, so with equal speeds, K = concurrency and every client busy, versions are synchronous rounds.
/// A freed slot goes to a client drawn uniformly from the idle ones with a seed derived from (run seed, task number).</para>
/// <para>Versions are numbered like rounds (1 … R = federation.rounds); the learning rate of a task is the cosine over
/// versions at its base version; its local seed is that of the client's n-th task, n counting from 0
/// (<see cref="RoundSchedule.LocalSeed(int, int, FederationOptions)"/> with round n), so repeated tasks of a client draw
/// fresh samples. Each version commits (global, the tasks in flight with their deltas, the clock, client state, history)
/// through the <see cref="RunStore"/>, so a resumed run continues bit for bit.</para>
/// </remarks>
public sealed class BufferedAsyncServer : IDisposable
{
    /// <summary>The run's name for this algorithm (its output folder).</summary>
    public const string AlgorithmName = "fedbuff";

    const string StatePrefix = "fedbuff/", ClockKey = StatePrefix + "clock", TasksStartedKey = StatePrefix + "tasks_started";

    readonly AsyncOptions asyncOptions;
    readonly FederationOptions options;
    readonly IClientExecutor clients;
    readonly RunStore? store;
    readonly Func<IReadOnlyDictionary<string, Tensor>, EvaluationResult>? evaluate;
    readonly Func<int, IReadOnlyDictionary<string, Tensor>, IReadOnlyDictionary<string, double>?>? taskMetrics;
    readonly int bufferSize, concurrency;
    readonly IStalenessWeight staleness;
    readonly IReadOnlyList<double> speeds;
    readonly List<RoundRecord> history = new();
    readonly List<Arrival> buffer = new();
    readonly VirtualClock<ClientTask> clock = new();
    readonly int[] tasksStarted;
    Dictionary<string, Tensor> global;
    long nextSequence;
    int tasksSinceVersion;
    Stopwatch sinceVersion = Stopwatch.StartNew();

    /// <summary>A trained task waiting for its finishing time: the client, its base version and its delta.</summary>
    sealed record ClientTask(int Client, int BaseVersion, Dictionary<string, Tensor> Delta, long ExampleCount, double TrainLoss, double DeltaNorm, long Bytes);

    sealed record Arrival(VirtualClock<ClientTask>.Scheduled Task, int Staleness);

    /// <param name="asyncOptions">Buffer size, concurrency, staleness weight, server learning rate and client speeds.</param>
    /// <param name="options">The federation: versions (rounds), clients, local training and seed.</param>
    /// <param name="initialGlobal">Version 0's adapter; copied, so the caller keeps ownership.</param>
    /// <param name="clients">Trains a client's task from a global version.</param>
    /// <param name="store">Commits every version for resume; null = no commits.</param>
    /// <param name="evaluate">Held-out scores of a global adapter, or null.</param>
    /// <param name="taskMetrics">Benchmark scores of a global adapter (version index, global), or null.</param>
    /// <exception cref="ArgumentException">The async options do not fit the federation (all problems listed).</exception>
    public BufferedAsyncServer(AsyncOptions asyncOptions, FederationOptions options, IReadOnlyDictionary<string, Tensor> initialGlobal,
        IClientExecutor clients, RunStore? store = null, Func<IReadOnlyDictionary<string, Tensor>, EvaluationResult>? evaluate = null,
        Func<int, IReadOnlyDictionary<string, Tensor>, IReadOnlyDictionary<string, double>?>? taskMetrics = null)
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
        bufferSize = asyncOptions.BufferSizeFor(options);
        concurrency = asyncOptions.ConcurrencyFor(options);
        staleness = asyncOptions.CreateWeight();
        speeds = asyncOptions.SpeedsFor(options.TotalClients);
        tasksStarted = new int[options.TotalClients];
        global = AdapterTensors.Clone(initialGlobal);
    }

    /// <summary>Versions committed so far (the newest global's number; 0 = the initial adapter).</summary>
    public int Version => history.Count;

    /// <summary>The current virtual time.</summary>
    public double Now => clock.Now;

    /// <summary>The newest committed global adapter (owned by the server).</summary>
    public IReadOnlyDictionary<string, Tensor> Global => global;
    /// <summary>One record per committed version, in order.</summary>
    public IReadOnlyList<RoundRecord> History => history;

    /// <summary>Continues from the store's last committed version, if there is one; returns whether it did.</summary>
    public bool TryResume()
    {
        if (store?.LoadLatest() is not { } committed) return false;
        if (clock.Pending > 0 || buffer.Count > 0 || history.Count > 0) throw new InvalidOperationException("resume before the first version");
        AdapterTensors.Dispose(global);
        global = committed.Global;
        clients.RestoreState(committed.ClientState);
        AdapterTensors.Dispose(committed.ClientState);
        LoadState(committed.StrategyState);
        history.AddRange(committed.History);
        return true;
    }

    /// <summary>Advances the clock until K updates are buffered, aggregates them into the next version and commits it.</summary>
    public async Task<RoundRecord> RunVersionAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            // Tasks finishing at the same instant all arrive before freed slots start new tasks.
            if (!clock.HasTaskFinishingNow) await FillSlotsAsync(cancellationToken);
            var task = clock.Next();
            int taskStaleness = Version - task.Item.BaseVersion;
            if (asyncOptions.MaxStaleness is { } most && taskStaleness > most)
            {
                // Too stale to help: dropped as it arrives, its client free for a task on the newest version.
                AdapterTensors.Dispose(task.Item.Delta);
                continue;
            }
            buffer.Add(new Arrival(task, taskStaleness));
            if (buffer.Count == bufferSize) return Aggregate();
        }
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

    async Task FillSlotsAsync(CancellationToken cancellationToken)
    {
        while (clock.Pending < concurrency)
        {
            var busy = clock.InFlight().Select(t => t.Item.Client).ToHashSet();
            var idle = Enumerable.Range(0, options.TotalClients).Where(i => !busy.Contains(i)).ToList();
            var rng = new Random(unchecked((int)(options.Seed * 7919 + nextSequence * 104_729 + 31)));
            await StartTaskAsync(idle[rng.Next(idle.Count)], cancellationToken);
        }
    }

    async Task StartTaskAsync(int client, CancellationToken cancellationToken)
    {
        long sequence = nextSequence;
        int taskIndex = tasksStarted[client];
        var instructions = new ClientInstructions(taskIndex, RoundSchedule.LearningRate(Version, options));
        IReadOnlyList<ClientUpdate> updates;
        try
        {
            updates = await clients.TrainRoundAsync(taskIndex, [client], global, instructions, cancellationToken);
        }
        finally
        {
            instructions.DisposeTensors();
        }
        try
        {
            if (updates.Count != 1) throw new InvalidOperationException($"task {sequence} of client {client}: {updates.Count} updates arrived, expected 1");
            var update = updates[0];
            UpdateChecks.Validate(global, updates);
            var delta = TensorMaps.Difference(update.Weights, global);
            double loss = update.Metrics?.GetValueOrDefault("train_loss", double.NaN) ?? double.NaN;
            var task = new ClientTask(client, Version, delta, update.ExampleCount, loss, AdapterTensors.DistanceNorm(update.Weights, global), update.Bytes);
            clock.Start(task, speeds[client] * options.LocalSteps, sequence);
        }
        finally
        {
            foreach (var update in updates) update.DisposeTensors();
        }
        nextSequence++;
        tasksStarted[client]++;
        tasksSinceVersion++;
    }

    RoundRecord Aggregate()
    {
        int index = Version;
        var deltas = buffer.Select(a => new ClientTensors(TaskId(a.Task.Sequence), a.Task.Item.Delta)).ToList();
        var weights = buffer.Select(a => staleness.Weight(a.Staleness)).ToList();
        var next = FedBuffAggregation.Apply(global, deltas, weights, asyncOptions.ServerLearningRate);
        double stepNorm = AdapterTensors.DistanceNorm(next, global);
        AdapterTensors.Dispose(global);
        global = next;

        int number = index + 1;
        bool evaluateNow = evaluate is not null && options.EvaluateEvery > 0 && (number % options.EvaluateEvery == 0 || number == options.RoundsToRun);
        var scores = evaluateNow ? evaluate!(global) : null;
        var benchmark = taskMetrics?.Invoke(index, global);
        string Id(Arrival a) => InProcessClientId(a.Task.Item.Client);
        var updates = buffer.Select((a, i) => new BufferedUpdate(Id(a), a.Task.Item.BaseVersion, a.Staleness, weights[i], a.Task.StartedAt, a.Task.FinishesAt,
            a.Task.Item.TrainLoss, a.Task.Item.DeltaNorm)).ToList();
        var record = new RoundRecord
        {
            Round = index,
            LearningRate = RoundSchedule.LearningRate(index, options),
            Clients = updates.Select(u => u.Client).ToList(),
            // A fast client may have two updates in one buffer: its mean here, each one in Async.Updates.
            ClientLoss = BufferedUpdate.MeanLossPerClient(updates),
            UpdateNorms = BufferedUpdate.MeanNormPerClient(updates),
            GlobalStepNorm = stepNorm,
            EvalLoss = scores?.Loss,
            EvalScore = scores?.Score,
            EvalMetrics = scores?.Metrics,
            TaskMetrics = benchmark,
            BytesSent = AdapterTensors.Bytes(global) * tasksSinceVersion,
            BytesReceived = buffer.Sum(a => a.Task.Item.Bytes),
            Seconds = sinceVersion.Elapsed.TotalSeconds,
            ResidentBytes = Runtime.TorchRuntime.ResidentBytes(),
            VirtualTime = clock.Now,
            Async = new RoundAsync(bufferSize, asyncOptions.ServerLearningRate, staleness.Name, updates),
        };
        foreach (var arrival in buffer) AdapterTensors.Dispose(arrival.Task.Item.Delta);
        buffer.Clear();
        history.Add(record);
        tasksSinceVersion = 0;
        sinceVersion = Stopwatch.StartNew();
        if (store is not null)
        {
            var state = State();
            try
            {
                store.Commit(global, state, clients.SnapshotState(), history);
            }
            finally
            {
                foreach (var (key, tensor) in state)
                    if (!key.Contains("/delta/", StringComparison.Ordinal)) tensor.Dispose(); // the deltas stay in flight
            }
        }
        return record;
    }

    /// <summary>The id client <paramref name="index"/> has in the records: in-process clients' "client-i".</summary>
    static string InProcessClientId(int index) => $"client-{index}";

    static string TaskId(long sequence) => $"task-{sequence:D12}";

    /// <summary>The loop's own state: the clock, each client's task count, and every task in flight with its delta.</summary>
    Dictionary<string, Tensor> State()
    {
        var state = new Dictionary<string, Tensor>
        {
            [ClockKey] = tensor(new[] { clock.Now, nextSequence }, ScalarType.Float64),
            [TasksStartedKey] = tensor(tasksStarted.Select(n => (long)n).ToArray(), ScalarType.Int64),
        };
        foreach (var t in clock.InFlight())
        {
            string prefix = StatePrefix + TaskId(t.Sequence) + "/";
            var item = t.Item;
            state[prefix + "meta"] = tensor(new[] { t.Sequence, item.Client, item.BaseVersion, t.StartedAt, t.FinishesAt, item.TrainLoss, item.ExampleCount,
                item.DeltaNorm, item.Bytes }, ScalarType.Float64);
            foreach (var (key, value) in item.Delta) state[prefix + "delta/" + key] = value;
        }
        return state;
    }

    void LoadState(Dictionary<string, Tensor> state)
    {
        try
        {
            if (!state.TryGetValue(ClockKey, out var clockTensor) || !state.TryGetValue(TasksStartedKey, out var started))
                throw new InvalidDataException($"the committed state has no {ClockKey}: it was not written by {AlgorithmName}");
            var times = clockTensor.data<double>().ToArray();
            clock.Reset(times[0]);
            nextSequence = (long)times[1];
            var counts = started.data<long>().ToArray();
            if (counts.Length != tasksStarted.Length)
                throw new InvalidDataException($"the committed state counts tasks of {counts.Length} clients, the run has {tasksStarted.Length}");
            for (int i = 0; i < counts.Length; i++) tasksStarted[i] = (int)counts[i];
            foreach (var metaKey in state.Keys.Where(k => k.EndsWith("/meta", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList())
            {
                string prefix = metaKey[..^"meta".Length];
                var m = state[metaKey].data<double>().ToArray();
                var delta = state.Where(kv => kv.Key.StartsWith(prefix + "delta/", StringComparison.Ordinal))
                    .ToDictionary(kv => kv.Key[(prefix.Length + "delta/".Length)..], kv => kv.Value);
                foreach (var key in delta.Keys) state.Remove(prefix + "delta/" + key); // owned by the task from here on
                var task = new ClientTask((int)m[1], (int)m[2], delta, (long)m[6], m[5], m[7], (long)m[8]);
                clock.Restore(new VirtualClock<ClientTask>.Scheduled((long)m[0], m[3], m[4], task));
            }
        }
        finally
        {
            AdapterTensors.Dispose(state);
        }
    }

    /// <summary>Frees the global adapter and the deltas of tasks still in flight or buffered.</summary>
    public void Dispose()
    {
        AdapterTensors.Dispose(global);
        foreach (var t in clock.InFlight()) AdapterTensors.Dispose(t.Item.Delta);
        foreach (var a in buffer) AdapterTensors.Dispose(a.Task.Item.Delta);
    }
}
