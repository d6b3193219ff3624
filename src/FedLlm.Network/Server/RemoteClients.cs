using FedLlm.Federation;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace FedLlm.Network.Server;

/// <summary>
/// The server's side of a networked round: the <see cref="IClientExecutor"/> that <see cref="FederationServer"/> drives,
/// backed by clients that dial in over gRPC. A round is opened for the sampled roster entries, handed out to them as they
/// poll, and closed when every one of them has answered or been left out (silent past the heartbeat timeout, or still
/// busy at the deadline) and at least <see cref="RemoteClientsOptions.MinUpdates"/> updates have been accepted.
/// </summary>
/// <remarks>
/// Thread-safe: gRPC handlers call in from many threads while the round loop waits in
/// <see cref="TrainRoundAsync"/>. One lock guards all bookkeeping; tensors are never touched under it.
/// </remarks>
public sealed class RemoteClients : IClientExecutor, IDisposable
{
    readonly RemoteClientsOptions options;
    readonly ILogger logger;
    readonly TimeProvider clock;
    readonly object gate = new();
    readonly Dictionary<string, ClientRecord> clients;
    readonly Dictionary<int, (long Sent, long Received)> traffic = new();
    TaskCompletionSource changed = NewSignal();
    OpenRound? open;
    bool finished;

    public RemoteClients(RemoteClientsOptions options, ILogger logger, TimeProvider? clock = null)
    {
        options.Validate();
        this.options = options;
        this.logger = logger;
        this.clock = clock ?? TimeProvider.System;
        clients = options.Roster.Select((id, i) => new ClientRecord(id, i)).ToDictionary(c => c.Id, StringComparer.Ordinal);
    }

    public RemoteClientsOptions Options => options;

    /// <summary>The round currently open, or null between rounds.</summary>
    public int? OpenRoundNumber
    {
        get { lock (gate) return open?.Round; }
    }

    /// <summary>Index of <paramref name="clientId"/> in the roster, or null when it is not on it.</summary>
    public int? RosterIndex(string clientId) => clients.TryGetValue(clientId, out var c) ? c.Index : null;

    public async Task<IReadOnlyList<ClientUpdate>> TrainRoundAsync(int round, IReadOnlyList<int> sampled, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default)
    {
        foreach (int index in sampled)
            if (index < 0 || index >= options.Roster.Count)
                throw new ArgumentOutOfRangeException(nameof(sampled), index, $"client index {index} is outside the roster of {options.Roster.Count}");
        if (options.MinUpdates > sampled.Count)
            throw new InvalidOperationException($"round {round}: min_updates {options.MinUpdates} exceeds the {sampled.Count} clients sampled per round");

        var context = new OpenRound(round, instructions, AdapterTensors.Clone(global),
            instructions.TensorSets.ToDictionary(kv => kv.Key, kv => (IReadOnlyDictionary<string, Tensor>)AdapterTensors.Clone(kv.Value), StringComparer.Ordinal),
            sampled.Select(i => options.Roster[i]).ToList());
        var deadline = clock.GetUtcNow() + options.RoundDeadline;
        lock (gate)
        {
            // Heartbeats are watched for the clients alive now (and those that call later): one that goes silent is
            // left out after the heartbeat timeout. One already gone has until the deadline to come back.
            var now = clock.GetUtcNow();
            foreach (var id in context.Assigned)
                if (clients[id].LastSeen is { } seen && now - seen <= options.HeartbeatTimeout) context.Watched.Add(id);
            open = context;
            Pulse();
        }
        logger.LogInformation("round {Round} open: clients {Clients}, lr {LearningRate:G4}, deadline {Deadline:O}",
            round, string.Join(",", context.Assigned), instructions.LearningRate, deadline);
        bool waitingLogged = false;
        try
        {
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                Task signal;
                lock (gate)
                {
                    var now = clock.GetUtcNow();
                    foreach (var id in context.Pending().Where(context.Watched.Contains).ToList())
                    {
                        var seen = clients[id].LastSeen;
                        if (seen is { } last && now - last > options.HeartbeatTimeout)
                            LeaveOut(context, id, $"missed heartbeats (last seen {(now - last).TotalSeconds:F1} s ago)");
                    }
                    int accepted = context.Accepted.Count;
                    bool pastDeadline = now >= deadline;
                    if (accepted >= options.MinUpdates && (!context.Pending().Any() || pastDeadline))
                    {
                        foreach (var id in context.Pending().ToList()) LeaveOut(context, id, "missed the round deadline");
                        open = null;
                        Pulse();
                        break;
                    }
                    if (!waitingLogged && (pastDeadline || !context.Pending().Any()))
                    {
                        waitingLogged = true;
                        logger.LogWarning("round {Round}: {Accepted} of the minimum {MinUpdates} updates; waiting for clients to rejoin", round, accepted, options.MinUpdates);
                    }
                    signal = changed.Task;
                }
                await Task.WhenAny(signal, Task.Delay(TimeSpan.FromMilliseconds(200), clock, cancellationToken));
            }
        }
        catch
        {
            lock (gate)
            {
                if (open == context) open = null;
                Pulse();
            }
            foreach (var update in context.Accepted.Values) DisposeUpdate(update);
            context.Release();
            throw;
        }

        lock (gate)
            traffic[round] = (Interlocked.Read(ref context.BytesSent), Interlocked.Read(ref context.BytesReceived));
        logger.LogInformation("round {Round} closed: {Count} updates from {Clients}; left out: {LeftOut}; {Sent} bytes sent, {Received} received",
            round, context.Accepted.Count, string.Join(",", context.Accepted.Keys.Order(StringComparer.Ordinal)),
            context.LeftOut.Count == 0 ? "none" : string.Join(",", context.LeftOut), context.BytesSent, context.BytesReceived);
        var updates = context.Accepted.Values.OrderBy(u => u.ClientId, StringComparer.Ordinal).ToList();
        context.Release();
        return updates;
    }

    public (long Sent, long Received)? MeasuredTraffic(int round)
    {
        lock (gate) return traffic.TryGetValue(round, out var t) ? t : null;
    }

    /// <summary>No more rounds: polling clients are told the run has finished.</summary>
    public void Finish()
    {
        lock (gate)
        {
            finished = true;
            Pulse();
        }
    }

    // ---- calls from the gRPC service; clientId is always the authenticated identity ----

    /// <summary>A client (re)joins: it counts as connected, and a task of the open round it has not answered is its again.</summary>
    public void Join(string clientId)
    {
        lock (gate)
        {
            Touch(clientId);
            Pulse();
        }
        logger.LogInformation("client {Client} joined", clientId);
    }

    /// <summary>A client left out of the open round (it fell silent) that shows up again gets its task back: the round
    /// is still open, so its update still counts. Clients left out at the deadline never come back, as the round is closed.</summary>
    void Reactivate(string clientId)
    {
        if (open is { } round && round.Assigned.Contains(clientId) && !round.Accepted.ContainsKey(clientId) && round.LeftOut.Remove(clientId))
            logger.LogInformation("round {Round}: client {Client} is back; its task is open again", round.Round, clientId);
    }

    public void Seen(string clientId)
    {
        lock (gate) Touch(clientId);
    }

    /// <summary>Any call shows the client is alive; one left out of the open round for silence is counted on again.</summary>
    void Touch(string clientId)
    {
        clients[clientId].LastSeen = clock.GetUtcNow();
        open?.Watched.Add(clientId);
        Reactivate(clientId);
    }

    /// <summary>Waits up to <paramref name="wait"/> for a task for <paramref name="clientId"/>.</summary>
    public async Task<TaskOffer> WaitForTaskAsync(string clientId, TimeSpan wait, CancellationToken cancellationToken)
    {
        var until = clock.GetUtcNow() + wait;
        while (true)
        {
            Task signal;
            lock (gate)
            {
                Touch(clientId);
                if (finished) return TaskOffer.RunFinished;
                if (open is { } round && round.Pending().Contains(clientId))
                    return new TaskOffer(round.Round, round.Instructions, false);
                signal = changed.Task;
            }
            var left = until - clock.GetUtcNow();
            if (left <= TimeSpan.Zero) return TaskOffer.None;
            await Task.WhenAny(signal, Task.Delay(left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1), clock, cancellationToken));
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    /// <summary>The open round's tensors for a client that holds its task; release the lease when done.</summary>
    /// <returns>Null, with the reason, when the client may not fetch that round.</returns>
    public RoundLease? Lease(string clientId, int round, out string reason)
    {
        lock (gate)
        {
            Touch(clientId);
            if (open is not { } context || context.Round != round)
            {
                reason = $"round {round} is not open (open: {(open is null ? "none" : open.Round)})";
                return null;
            }
            if (!context.Pending().Contains(clientId))
            {
                reason = $"client {clientId} holds no task in round {round}";
                return null;
            }
            context.Acquire();
            reason = "";
            return new RoundLease(context);
        }
    }

    /// <summary>Checks an update's header before any tensor is read.</summary>
    /// <returns>The lease to read it against, or null with the reason it is refused.</returns>
    public RoundLease? BeginSubmission(string clientId, int round, string claimedId, out string reason)
    {
        lock (gate)
        {
            Touch(clientId);
            if (claimedId != clientId)
                reason = $"update names client '{claimedId}' but the sender authenticated as '{clientId}'";
            else if (open is not { } context)
                reason = $"update for round {round} arrived while no round is open (late or replayed)";
            else if (round != context.Round)
                reason = $"update for round {round} while round {context.Round} is open (late or replayed)";
            else if (!context.Assigned.Contains(clientId))
                reason = $"client {clientId} was not given round {round}'s task";
            else if (context.Accepted.ContainsKey(clientId))
                reason = $"client {clientId} already submitted round {round} (replay)";
            else if (context.LeftOut.Contains(clientId))
                reason = $"client {clientId} was left out of round {round}";
            else
            {
                context.Acquire();
                reason = "";
                return new RoundLease(context);
            }
        }
        Reject(clientId, round, reason);
        return null;
    }

    /// <summary>Takes a fully read and validated update into its round; null on success, else the reason it was refused
    /// (the caller still owns the tensors then).</summary>
    public string? Accept(RoundLease lease, ClientUpdate update)
    {
        string reason;
        lock (gate)
        {
            var context = lease.Context;
            if (open != context) reason = $"round {context.Round} closed before the update from {update.ClientId} was complete";
            else if (context.Accepted.ContainsKey(update.ClientId)) reason = $"client {update.ClientId} already submitted round {context.Round} (replay)";
            else if (context.LeftOut.Contains(update.ClientId)) reason = $"client {update.ClientId} was left out of round {context.Round}";
            else
            {
                context.Accepted[update.ClientId] = update;
                clients[update.ClientId].Accepted++;
                clients[update.ClientId].LastRound = context.Round;
                Pulse();
                logger.LogInformation("round {Round}: accepted update from client {Client} ({Examples} examples)", context.Round, update.ClientId, update.ExampleCount);
                return null;
            }
        }
        Reject(update.ClientId, lease.Context.Round, reason);
        return reason;
    }

    /// <summary>Logs and counts a refused update; the round goes on without it.</summary>
    public void Reject(string clientId, int round, string reason)
    {
        lock (gate)
            if (clients.TryGetValue(clientId, out var record)) record.Rejected++;
        logger.LogWarning("round {Round}: rejected update from client {Client}: {Reason}", round, clientId, reason);
    }

    public StatusSnapshot Status()
    {
        lock (gate)
        {
            var now = clock.GetUtcNow();
            return new StatusSnapshot(open?.Round, open?.Accepted.Count ?? 0, clients.Values.OrderBy(c => c.Index).Select(c => new ClientSnapshot(
                c.Id, c.LastSeen is { } s && now - s <= options.HeartbeatTimeout, c.LastSeen is { } t ? (now - t).TotalSeconds : -1, c.Accepted, c.Rejected)).ToList());
        }
    }

    // ---- the client registry, committed with each round ----

    const string RegistryPrefix = "registry/";

    public IReadOnlyDictionary<string, Tensor> SnapshotState()
    {
        lock (gate)
            return clients.Values.ToDictionary(c => RegistryPrefix + c.Id, c => tensor(new long[] { c.Accepted, c.Rejected, c.LastRound }));
    }

    public void RestoreState(IReadOnlyDictionary<string, Tensor> state)
    {
        lock (gate)
        {
            foreach (var (key, value) in state)
            {
                if (!key.StartsWith(RegistryPrefix, StringComparison.Ordinal)) continue;
                string id = key[RegistryPrefix.Length..];
                if (!clients.TryGetValue(id, out var record))
                {
                    logger.LogWarning("committed state names client {Client}, which the roster no longer has; ignored", id);
                    continue;
                }
                var fields = value.data<long>().ToArray();
                (record.Accepted, record.Rejected, record.LastRound) = ((int)fields[0], (int)fields[1], (int)fields[2]);
            }
        }
    }

    public void Dispose()
    {
        lock (gate)
        {
            finished = true;
            Pulse();
        }
    }

    void LeaveOut(OpenRound context, string id, string reason)
    {
        if (!context.LeftOut.Add(id)) return;
        Pulse();
        logger.LogWarning("round {Round}: client {Client} left out: {Reason}", context.Round, id, reason);
    }

    void Pulse()
    {
        var previous = changed;
        changed = NewSignal();
        previous.TrySetResult();
    }

    static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal static void DisposeUpdate(ClientUpdate update) => update.DisposeTensors();

    sealed class ClientRecord(string id, int index)
    {
        public string Id { get; } = id;
        public int Index { get; } = index;
        public DateTimeOffset? LastSeen { get; set; }
        public int Accepted { get; set; }
        public int Rejected { get; set; }
        public int LastRound { get; set; } = -1;
    }
}

/// <summary>What a polling client is told: a task (the round's instructions, whose tensor sets it fetches separately),
/// nothing yet, or that the run is over.</summary>
public sealed record TaskOffer(int Round, ClientInstructions? Instructions, bool Finished)
{
    public static TaskOffer None { get; } = new(-1, null, false);
    public static TaskOffer RunFinished { get; } = new(-1, null, true);
    public bool HasTask => Round >= 0;
}

public sealed record ClientSnapshot(string Id, bool Connected, double SecondsSinceSeen, int Accepted, int Rejected);

public sealed record StatusSnapshot(int? OpenRound, int UpdatesThisRound, IReadOnlyList<ClientSnapshot> Clients);

/// <summary>
/// One open round: its tensors (the server's copies, so a slow download cannot outlive them) and who did what. The
/// copies are freed when the round loop and every lease holder have let go.
/// </summary>
public sealed class OpenRound(int round, ClientInstructions instructions, Dictionary<string, Tensor> global,
    IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> tensorSets, IReadOnlyList<string> assigned)
{
    int references = 1;
    public long BytesSent;
    public long BytesReceived;

    public int Round { get; } = round;
    /// <summary>The round's instructions; their tensors belong to the round loop, so read <see cref="TensorSets"/> instead.</summary>
    public ClientInstructions Instructions { get; } = instructions;
    public IReadOnlyDictionary<string, Tensor> Global { get; } = global;

    /// <summary>The server's copies of the instructions' tensor sets.</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> TensorSets { get; } = tensorSets;
    public IReadOnlyList<string> Assigned { get; } = assigned;
    public Dictionary<string, ClientUpdate> Accepted { get; } = new(StringComparer.Ordinal);
    public HashSet<string> LeftOut { get; } = new(StringComparer.Ordinal);

    /// <summary>Assigned clients whose heartbeats count: alive at the open, or heard from since.</summary>
    public HashSet<string> Watched { get; } = new(StringComparer.Ordinal);

    public IEnumerable<string> Pending() => Assigned.Where(id => !Accepted.ContainsKey(id) && !LeftOut.Contains(id));

    internal void Acquire() => Interlocked.Increment(ref references);

    internal void Release()
    {
        if (Interlocked.Decrement(ref references) != 0) return;
        AdapterTensors.Dispose(Global);
        foreach (var set in TensorSets.Values) AdapterTensors.Dispose(set);
    }
}

/// <summary>A hold on an open round's tensors while they are streamed or an update is checked against them.</summary>
public sealed class RoundLease(OpenRound context) : IDisposable
{
    int released;
    public OpenRound Context { get; } = context;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref released, 1) == 0) Context.Release();
    }
}
