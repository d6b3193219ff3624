using FedLlm.Federation;
using FedLlm.Federation.Personalization;
using FedLlm.Federation.Validation;
using FedLlm.Network.Protocol;
using FedLlm.Network.Transfer;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace FedLlm.Network.Server;

/// <summary>
/// The server's side of a networked round: the <see cref="IClientExecutor"/> that <see cref="FederationServer"/> drives,
/// backed by clients that dial in over gRPC. A round is opened for the sampled roster entries, handed out to them as they
/// poll, and closed as soon as every one of them has answered, been refused, or been left out (silent past the heartbeat
/// timeout, backing off after refusals, or still busy at the deadline), once at least
/// <see cref="RemoteClientsOptions.MinUpdates"/> updates have been accepted.
/// </summary>
/// <remarks>
/// A refused update excludes its sender from the round: it is told why and gets no task until a later round, and each
/// further refusal in a row doubles how long it waits (<see cref="RemoteClientsOptions.RefusalBackoff"/>). Only a round
/// that cannot reach its minimum without a refused client hands that client the task again, after its backoff.
/// Thread-safe: gRPC handlers call in from many threads while the round loop waits in
/// <see cref="TrainRoundAsync"/>. One lock guards all bookkeeping; tensors are never read under it.
/// </remarks>
public sealed partial class RemoteClients : IClientExecutor, IDisposable
{
    readonly RemoteClientsOptions options;
    readonly ILogger logger;
    readonly TimeProvider clock;
    readonly ServerMetrics? metrics;
    readonly object gate = new();
    readonly Dictionary<string, ClientRecord> clients;
    readonly Dictionary<int, (long Sent, long Received)> traffic = new();
    ReceivePool? receivePool;
    TaskCompletionSource changed = NewSignal();
    OpenRound? open;
    bool finished;
    string? stopReason;
    DateTimeOffset stopDeadline;
    long uploadBytesInFlight;

    /// <summary>The registry of the roster's clients; <paramref name="options"/> are validated here.</summary>
    /// <param name="options">Roster, deadlines and update bounds.</param>
    /// <param name="logger">Where joins, round closes and refusals are logged.</param>
    /// <param name="clock">The time source for deadlines and heartbeats; the system clock by default (tests pass a fake
    /// one).</param>
    /// <param name="metrics">Prometheus metrics to update, or null.</param>
    /// <exception cref="ArgumentException">The options are invalid (see <see
    /// cref="RemoteClientsOptions.Validate"/>).</exception>
    public RemoteClients(RemoteClientsOptions options, ILogger logger, TimeProvider? clock = null, ServerMetrics? metrics = null)
    {
        options.Validate();
        this.options = options;
        this.logger = logger;
        this.clock = clock ?? TimeProvider.System;
        this.metrics = metrics;
        clients = options.Roster.Select((id, i) => new ClientRecord(id, i)).ToDictionary(c => c.Id, StringComparer.Ordinal);
    }

    /// <summary>The validated options this registry runs with.</summary>
    public RemoteClientsOptions Options => options;

    /// <summary>The round currently open, or null between rounds.</summary>
    public int? OpenRoundNumber
    {
        get { lock (gate) return open?.Round; }
    }

    /// <summary>Why the server is stopping, or null while it runs.</summary>
    public string? StopReason
    {
        get { lock (gate) return stopReason; }
    }

    /// <summary>Index of <paramref name="clientId"/> in the roster, or null when it is not on it.</summary>
    public int? RosterIndex(string clientId) => clients.TryGetValue(clientId, out var c) ? c.Index : null;

    /// <summary>Whether the operator removed <paramref name="clientId"/> from the run.</summary>
    public bool IsRemoved(string clientId)
    {
        lock (gate) return clients.TryGetValue(clientId, out var c) && c.Removed;
    }

    /// <inheritdoc/>
    /// <remarks>Opens the round for the sampled roster members, waits until every live one has answered or the deadline
    /// passes with at least <see cref="RemoteClientsOptions.MinUpdates"/> updates, and returns the accepted updates
    /// (the caller owns their tensors).</remarks>
    /// <exception cref="ArgumentOutOfRangeException">A sampled index is outside the roster.</exception>
    public async Task<IReadOnlyList<ClientUpdate>> TrainRoundAsync(int round, IReadOnlyList<int> sampled, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default)
    {
        if (Asynchronous) throw new InvalidOperationException("asynchronous server options (async:) have no rounds: drive the clients through IAsyncClientPool");
        foreach (int index in sampled)
            if (index < 0 || index >= options.Roster.Count)
                throw new ArgumentOutOfRangeException(nameof(sampled), index, $"client index {index} is outside the roster of {options.Roster.Count}");
        if (options.MinUpdates > sampled.Count)
            throw new InvalidOperationException($"round {RoundRecord.NumberOf(round)}: min_updates {options.MinUpdates} exceeds the {sampled.Count} clients sampled per round");
        lock (gate)
            if (stopReason is not null) throw new ServerStoppingException($"round {RoundRecord.NumberOf(round)} not started: the server is stopping ({stopReason})");

        var context = new OpenRound(round, instructions, AdapterTensors.Clone(global),
            instructions.TensorSets.ToDictionary(kv => kv.Key, kv => (IReadOnlyDictionary<string, Tensor>)AdapterTensors.Clone(kv.Value), StringComparer.Ordinal),
            sampled.Select(i => options.Roster[i]).ToList(), options.Encoding, Received);
        var deadline = clock.GetUtcNow() + options.RoundDeadline;
        var opened = clock.GetUtcNow();
        lock (gate)
        {
            // Heartbeats are watched for the clients alive now (and those that call later): one that goes silent is
            // left out after the heartbeat timeout. One already gone has until the deadline to come back.
            var now = clock.GetUtcNow();
            foreach (var id in context.Assigned)
            {
                if (clients[id].Removed) context.LeftOut.Add(id);
                else if (clients[id].LastSeen is { } seen && now - seen <= options.HeartbeatTimeout) context.Watched.Add(id);
            }
            open = context;
            Pulse();
        }
        metrics?.RoundOpened(round);
        logger.LogInformation("round {Round} open: clients {Clients}, lr {LearningRate:G4}, deadline {Deadline:O}",
            RoundRecord.NumberOf(round), string.Join(",", context.Assigned), instructions.LearningRate, deadline);
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
                    if (stopReason is not null)
                    {
                        // Stopping: a client that has not taken its task will not get it; the round finishes with the
                        // clients already training, or is abandoned at once when none is.
                        foreach (var id in context.Pending().Where(id => !context.Taken.Contains(id)).ToList())
                            LeaveOut(context, id, "the server is stopping");
                        if (now >= stopDeadline || (context.Accepted.Count < options.MinUpdates && !context.Pending().Any()))
                            throw new ServerStoppingException($"round {RoundRecord.NumberOf(round)} abandoned: the server is stopping ({stopReason})");
                    }
                    foreach (var id in context.Pending().Where(context.Watched.Contains).ToList())
                    {
                        var seen = clients[id].LastSeen;
                        if (seen is { } last && now - last > options.HeartbeatTimeout)
                            LeaveOut(context, id, $"missed heartbeats (last seen {(now - last).TotalSeconds:F1} s ago)");
                    }
                    ReadmitIfStuck(context, now);
                    var active = context.Pending().Where(id => !IsBackingOff(id, now)).ToList();
                    bool pastDeadline = now >= deadline;
                    if (context.Accepted.Count >= options.MinUpdates && (active.Count == 0 || pastDeadline))
                    {
                        ScreenNorms(context);
                        if (context.Accepted.Count >= options.MinUpdates)
                        {
                            foreach (var id in context.Pending().ToList())
                                LeaveOut(context, id, IsBackingOff(id, now)
                                    ? $"backing off after {clients[id].ConsecutiveRefusals} refused updates in a row"
                                    : "missed the round deadline");
                            open = null;
                            Pulse();
                            break;
                        }
                    }
                    if (!waitingLogged && (pastDeadline || active.Count == 0))
                    {
                        waitingLogged = true;
                        logger.LogWarning("round {Round}: {Accepted} of the minimum {MinUpdates} updates; waiting for clients to rejoin", RoundRecord.NumberOf(round), context.Accepted.Count, options.MinUpdates);
                    }
                    signal = changed.Task;
                }
                await Task.WhenAny(signal, Task.Delay(TimeSpan.FromMilliseconds(200), clock, cancellationToken));
            }
        }
        catch
        {
            List<ClientUpdate> dropped;
            lock (gate)
            {
                if (open == context) open = null;
                dropped = context.Accepted.Values.ToList();
                context.Accepted.Clear();
                Pulse();
            }
            foreach (var update in dropped) DisposeUpdate(update);
            context.Release();
            throw;
        }

        lock (gate)
            traffic[round] = (Interlocked.Read(ref context.BytesSent), Interlocked.Read(ref context.BytesReceived));
        metrics?.RoundClosed((clock.GetUtcNow() - opened).TotalSeconds, context.BytesSent, context.BytesReceived);
        logger.LogInformation("round {Round} closed: {Count} updates from {Clients}; refused: {Refused}; left out: {LeftOut}; {Sent} bytes sent, {Received} received",
            RoundRecord.NumberOf(round), context.Accepted.Count, string.Join(",", context.Accepted.Keys.Order(StringComparer.Ordinal)),
            context.Refused.Count == 0 ? "none" : string.Join(",", context.Refused.Keys.Order(StringComparer.Ordinal)),
            context.LeftOut.Count == 0 ? "none" : string.Join(",", context.LeftOut.Order(StringComparer.Ordinal)), context.BytesSent, context.BytesReceived);
        var updates = context.Accepted.Values.OrderBy(u => u.ClientId, StringComparer.Ordinal).ToList();
        context.Release();
        return updates;
    }

    /// <inheritdoc/>
    /// <remarks>Per-client evaluation (<see cref="PersonalEvaluationOnClients"/>) runs as a second opening of the round
    /// with the evaluation task: the same deadline, heartbeats, minimum and refusals as training. Each answer is an
    /// update carrying the global unchanged, the held-out size as its example count and the scores as its metrics; its
    /// weights are dropped here. Its wire bytes are added to the round's. Other evaluation requests get no answer (the
    /// clients' training data is theirs to score only through this task).</remarks>
    public async Task<IReadOnlyList<ClientEvaluation>> EvaluateRoundAsync(int round, IReadOnlyList<int> sampled, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default)
    {
        if (!PersonalEvaluationOnClients.Asks(instructions)) return [];
        var trained = MeasuredTraffic(round);
        var answers = await TrainRoundAsync(round, sampled, global, instructions, cancellationToken);
        lock (gate)
            if (trained is { } t && traffic.TryGetValue(round, out var e)) traffic[round] = (t.Sent + e.Sent, t.Received + e.Received);
        var results = answers.Select(a => new ClientEvaluation(a.ClientId, a.ExampleCount, a.Metrics ?? new Dictionary<string, double>())).ToList();
        foreach (var answer in answers) DisposeUpdate(answer);
        return results;
    }

    /// <summary>A round that cannot reach its minimum with the clients still working hands the task back to refused
    /// clients whose backoff has passed: without them it would wait forever.</summary>
    void ReadmitIfStuck(OpenRound context, DateTimeOffset now)
    {
        if (context.Accepted.Count + context.Pending().Count() >= options.MinUpdates) return;
        foreach (var id in context.Refused.Keys.Order(StringComparer.Ordinal).ToList())
        {
            if (clients[id].Removed || IsBackingOff(id, now)) continue;
            context.Refused.Remove(id);
            Pulse();
            logger.LogWarning("round {Round}: {Accepted} of the minimum {MinUpdates} updates without refused clients; client {Client} may try again",
                RoundRecord.NumberOf(context.Round), context.Accepted.Count, options.MinUpdates, id);
            if (context.Accepted.Count + context.Pending().Count() >= options.MinUpdates) return;
        }
    }

    /// <summary>Refuses, at the close, the accepted updates far above the round's median norm (see <see cref="RoundNormScreen"/>).</summary>
    void ScreenNorms(OpenRound context)
    {
        if (options.MaxUpdateNormRatio is not { } ratio) return;
        var outliers = RoundNormScreen.Outliers(context.Norms.Where(kv => context.Accepted.ContainsKey(kv.Key)).ToDictionary(), ratio);
        foreach (var (id, reason) in outliers)
        {
            var update = context.Accepted[id];
            context.Accepted.Remove(id);
            clients[id].Accepted--;
            context.Discarded.Add(update);
            Refuse(context, id, reason, clock.GetUtcNow());
        }
    }

    bool IsBackingOff(string id, DateTimeOffset now) => clients[id].BackoffUntil is { } until && now < until;

    /// <summary>Wire bytes sent to and received from clients in <paramref name="round"/>, or null when that round did
    /// not run here.</summary>
    public (long Sent, long Received)? MeasuredTraffic(int round)
    {
        lock (gate) return traffic.TryGetValue(round, out var t) ? t : null;
    }

    /// <summary>Where uploads are decoded into: the memory of updates released in earlier rounds (at most the upload
    /// memory budget of it).</summary>
    public ReceivePool Received => LazyInitializer.EnsureInitialized(ref receivePool, () => new ReceivePool(options.UploadMemoryBudget));

    /// <summary>Keeps the released updates' fp32 tensors for later uploads to be decoded into (<see
    /// cref="ReceivePool"/>), up to the upload memory budget; frees the rest.</summary>
    public void Release(IReadOnlyList<ClientUpdate> updates)
    {
        ArgumentNullException.ThrowIfNull(updates);
        foreach (var update in updates) Received.Return(update.Weights.Values.Concat(update.TensorSets.Values.SelectMany(set => set.Values)));
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

    /// <summary>Roster clients (not removed) that have not yet heard that the run is over. A client away in its
    /// reconnect backoff when the run ends (a server resumed after its last round was committed ends at once) learns it
    /// only by polling again; a server that exited first would leave it retrying a listener that is gone.</summary>
    public int ClientsNotYetToldTheEnd
    {
        get
        {
            lock (gate) return clients.Values.Count(c => !c.Removed && !c.ToldFinished);
        }
    }

    /// <summary>Clients that hold an asynchronous task and still send heartbeats. After the last version they are
    /// training one that will never be aggregated, and have not yet heard that the run is over: a server that exited
    /// now would leave them retrying a listener that is gone.</summary>
    public int ClientsStillTraining
    {
        get
        {
            lock (gate)
            {
                var now = clock.GetUtcNow();
                return clients.Values.Count(c => c.HeldVersion is not null && c.LastSeen is { } seen && now - seen <= options.HeartbeatTimeout);
            }
        }
    }

    /// <summary>Stops admitting: no new round opens, the open one has <see cref="RemoteClientsOptions.StopGrace"/> (none
    /// when <paramref name="abandonRound"/>) to finish before <see cref="TrainRoundAsync"/> abandons it, and polling
    /// clients are told the server is stopping.</summary>
    /// <returns>False when a stop was already under way (a second request only shortens the grace).</returns>
    public bool BeginStop(string reason, bool abandonRound)
    {
        lock (gate)
        {
            var now = clock.GetUtcNow();
            var until = abandonRound ? now : now + options.StopGrace;
            bool first = stopReason is null;
            if (first || until < stopDeadline) stopDeadline = until;
            stopReason ??= reason;
            Pulse();
            return first;
        }
    }

    // ---- operator controls ----

    /// <summary>Drops the open round's updates and hands its task out again to every assigned client.</summary>
    public string AbortRound()
    {
        List<ClientUpdate> dropped;
        int round;
        if (Asynchronous) return "asynchronous aggregation (async:) has no round to abort; stop the server or remove a client instead";
        lock (gate)
        {
            if (open is not { } context) return "no round is open";
            round = context.Round;
            dropped = context.Accepted.Values.Concat(context.Discarded).ToList();
            foreach (var id in context.Accepted.Keys) clients[id].Accepted--;
            context.Accepted.Clear();
            context.Discarded.Clear();
            context.Norms.Clear();
            context.Refused.Clear();
            context.LeftOut.RemoveWhere(id => !clients[id].Removed);
            context.Attempt++;
            Pulse();
        }
        foreach (var update in dropped) DisposeUpdate(update);
        logger.LogWarning("round {Round} aborted by the operator: {Count} updates dropped; its task is handed out again", RoundRecord.NumberOf(round), dropped.Count);
        return $"round {RoundRecord.NumberOf(round)} aborted: {dropped.Count} updates dropped; every assigned client trains it again";
    }

    /// <summary>Shuts <paramref name="clientId"/> out of the run (kept across restarts in the committed registry).</summary>
    public string RemoveClient(string clientId)
    {
        ClientUpdate? dropped = null;
        lock (gate)
        {
            if (!clients.TryGetValue(clientId, out var record)) return $"client '{clientId}' is not on the roster";
            if (record.Removed) return $"client '{clientId}' was already removed";
            record.Removed = true;
            if (Asynchronous)
            {
                foreach (var a in arrivals.Where(a => a.Update.ClientId == clientId).ToList())
                {
                    arrivals.Remove(a);
                    record.Accepted--;
                    DisposeUpdate(a.Update);
                    a.Base.Release();
                }
                record.HeldVersion = null;
                ReleaseUnusedVersions();
            }
            else if (open is { } context && context.Assigned.Contains(clientId))
            {
                if (context.Accepted.Remove(clientId, out dropped)) record.Accepted--;
                context.Refused.Remove(clientId);
                LeaveOut(context, clientId, "removed by the operator");
            }
            Pulse();
        }
        if (dropped is not null) DisposeUpdate(dropped);
        logger.LogWarning("client {Client} removed from the run by the operator", clientId);
        return $"client '{clientId}' removed: its calls are refused and it is left out of every round";
    }

    // ---- calls from the gRPC service; clientId is always the authenticated identity ----

    /// <summary>A client (re)joins with the number of examples it holds, the most its updates may claim.</summary>
    /// <param name="declaredExamples">Null when the client has not read its data yet (it joins again with the count).</param>
    /// <param name="clientId">The authenticated caller.</param>
    public void Join(string clientId, long? declaredExamples)
    {
        lock (gate)
        {
            Touch(clientId);
            if (declaredExamples is not null) clients[clientId].DeclaredExamples = declaredExamples;
            Pulse();
        }
        if (declaredExamples is { } n) logger.LogInformation("client {Client} joined ({Examples} examples declared)", clientId, n);
        else logger.LogInformation("client {Client} joined", clientId);
    }

    /// <summary>Whether <paramref name="clientId"/> has told the server how many examples it holds (clients before
    /// protocol v2.1 do not).</summary>
    public bool HasDeclaredExamples(string clientId)
    {
        lock (gate) return clients[clientId].DeclaredExamples is not null;
    }

    /// <summary>The bounds an update from <paramref name="clientId"/> must respect: the configured ones, with the example
    /// count bounded also by what the client declared when it joined.</summary>
    public UpdateLimits LimitsFor(string clientId)
    {
        lock (gate)
        {
            long declared = clients[clientId].DeclaredExamples ?? long.MaxValue;
            return options.Limits with { MaxExampleCount = Math.Min(options.Limits.MaxExampleCount, declared) };
        }
    }

    /// <summary>A client left out of the open round (it fell silent) that shows up again gets its task back: the round
    /// is still open, so its update still counts. Clients left out at the deadline never come back, as the round is closed.</summary>
    void Reactivate(string clientId)
    {
        if (stopReason is null && open is { } round && round.Assigned.Contains(clientId) && !round.Accepted.ContainsKey(clientId) && !clients[clientId].Removed
            && round.LeftOut.Remove(clientId))
            logger.LogInformation("round {Round}: client {Client} is back; its task is open again", RoundRecord.NumberOf(round.Round), clientId);
    }

    /// <summary>Records a sign of life from <paramref name="clientId"/> (a heartbeat or any other call).</summary>
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
                if (finished)
                {
                    clients[clientId].HeldVersion = null; // told: it trains nothing more
                    clients[clientId].ToldFinished = true;
                    return TaskOffer.RunFinished;
                }
                if (stopReason is not null) return TaskOffer.Stopping(stopReason);
                if (Asynchronous)
                {
                    if (AsyncOffer(clientId) is { } offer) return offer;
                }
                else if (open is { } round && round.Pending().Contains(clientId) && !IsBackingOff(clientId, clock.GetUtcNow()))
                {
                    round.Taken.Add(clientId);
                    return new TaskOffer(round.Round, round.Instructions, false);
                }
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
            if (Asynchronous)
            {
                var held = HeldContext(clientId, round, out reason);
                if (held is null) return null;
                held.Acquire();
                return new RoundLease(held, held.Attempt);
            }
            if (open is not { } context || context.Round != round)
            {
                reason = $"round {RoundRecord.NumberOf(round)} is not open (open: {(open is null ? "none" : RoundRecord.NumberOf(open.Round).ToString())})";
                return null;
            }
            if (!context.Pending().Contains(clientId))
            {
                reason = $"client {clientId} holds no task in round {RoundRecord.NumberOf(round)}";
                return null;
            }
            context.Acquire();
            reason = "";
            return new RoundLease(context, context.Attempt);
        }
    }

    /// <summary>Checks an update's header before any tensor is read, and reserves the memory its decoded tensors take.</summary>
    /// <param name="retryAfter">Above zero when the update is not refused but must wait: the upload memory budget is in use.</param>
    /// <returns>The lease to read it against, or null with the reason it is refused.</returns>
    /// <param name="clientId">The authenticated caller.</param>
    /// <param name="round">The round the update says it belongs to.</param>
    /// <param name="claimedId">The client id in the update's header; must equal <paramref name="clientId"/>.</param>
    /// <param name="reason">Why it was refused, when the result is null.</param>
    public RoundLease? BeginSubmission(string clientId, int round, string claimedId, out string reason, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        lock (gate)
        {
            Touch(clientId);
            var record = clients[clientId];
            OpenRound? context = null;
            // Refused before any tensor is read, so it costs nothing to wait for the sender's real update: no exclusion.
            if (claimedId != clientId)
                reason = $"update names client '{claimedId}' but the sender authenticated as '{clientId}'";
            else if (Asynchronous && AsyncSubmissionProblem(clientId, round, out context) is { } problem)
                reason = problem;
            else if (!Asynchronous && (context = open) is null)
                reason = $"update for round {RoundRecord.NumberOf(round)} arrived while no round is open (late or replayed)";
            else if (!Asynchronous && round != context!.Round)
                reason = $"update for round {RoundRecord.NumberOf(round)} while round {RoundRecord.NumberOf(context.Round)} is open (late or replayed)";
            else if (!Asynchronous && !context!.Assigned.Contains(clientId))
                reason = $"client {clientId} was not given round {RoundRecord.NumberOf(round)}'s task";
            else if (!Asynchronous && context!.Accepted.ContainsKey(clientId))
                reason = $"client {clientId} already submitted round {RoundRecord.NumberOf(round)} (replay)";
            else if (!Asynchronous && context!.Refused.TryGetValue(clientId, out var earlier))
                reason = $"client {clientId}'s update for round {RoundRecord.NumberOf(round)} was refused already ({earlier}); its next task comes in a later round";
            else if (!Asynchronous && context!.LeftOut.Contains(clientId))
                reason = $"client {clientId} was left out of round {RoundRecord.NumberOf(round)}";
            else if (record.Uploading)
                reason = $"an upload from client {clientId} is already in flight; one at a time";
            else if (uploadBytesInFlight > 0 && uploadBytesInFlight + context!.UploadBytes > options.UploadMemoryBudget)
            {
                retryAfter = TimeSpan.FromSeconds(2);
                reason = $"the server's upload memory budget ({options.UploadMemoryBudget} bytes) is in use; send again in {retryAfter.TotalSeconds:F0} s";
                logger.LogInformation("round {Round}: client {Client} asked to retry its upload later: {Reason}", RoundRecord.NumberOf(round), clientId, reason);
                return null;
            }
            else
            {
                context!.Acquire();
                record.Uploading = true;
                long reserved = context.UploadBytes;
                uploadBytesInFlight += reserved;
                reason = "";
                return new RoundLease(context, context.Attempt, () =>
                {
                    lock (gate)
                    {
                        record.Uploading = false;
                        uploadBytesInFlight -= reserved;
                    }
                });
            }
        }
        Reject(clientId, round, reason, exclude: false);
        return null;
    }

    /// <summary>Takes a fully read and validated update into its round; null on success, else the reason it was refused
    /// (the caller still owns the tensors then).</summary>
    /// <param name="norm">‖y_i − x‖, for <see cref="RemoteClientsOptions.MaxUpdateNormRatio"/>.</param>
    /// <param name="lease">The lease taken by <see cref="BeginSubmission"/> for this update.</param>
    /// <param name="update">The decoded update; ownership of its tensors passes to the round on success.</param>
    /// <param name="wireBytes">The update's bytes as received (asynchronous mode records them per update).</param>
    public string? Accept(RoundLease lease, ClientUpdate update, double norm, long wireBytes = 0)
    {
        string reason;
        lock (gate)
        {
            var context = lease.Context;
            if (Asynchronous)
            {
                if (AcceptAsync(lease, update, norm, wireBytes) is not { } problem) return null;
                reason = problem;
            }
            else if (open != context) reason = $"round {RoundRecord.NumberOf(context.Round)} closed before the update from {update.ClientId} was complete";
            else if (lease.Attempt != context.Attempt) reason = $"round {RoundRecord.NumberOf(context.Round)} was aborted while the update from {update.ClientId} arrived; train it again";
            else if (context.Accepted.ContainsKey(update.ClientId)) reason = $"client {update.ClientId} already submitted round {RoundRecord.NumberOf(context.Round)} (replay)";
            else if (context.LeftOut.Contains(update.ClientId)) reason = $"client {update.ClientId} was left out of round {RoundRecord.NumberOf(context.Round)}";
            else
            {
                var record = clients[update.ClientId];
                context.Accepted[update.ClientId] = update;
                context.Norms[update.ClientId] = norm;
                record.Accepted++;
                record.LastRound = context.Round;
                record.ConsecutiveRefusals = 0;
                record.BackoffUntil = null;
                Pulse();
                logger.LogInformation("round {Round}: accepted update from client {Client} ({Examples} examples)", RoundRecord.NumberOf(context.Round), update.ClientId, update.ExampleCount);
                return null;
            }
        }
        Reject(update.ClientId, lease.Context.Round, reason, exclude: false);
        return reason;
    }

    /// <summary>Logs and counts a refused update. With <paramref name="exclude"/> (the update was the sender's answer to
    /// the open round's task), the sender is excluded from the round and backs off.</summary>
    public void Reject(string clientId, int round, string reason, bool exclude = true)
    {
        lock (gate)
        {
            if (!clients.TryGetValue(clientId, out var record)) return;
            if (Asynchronous && exclude)
            {
                RefuseAsync(record, reason, round);
                ReleaseUnusedVersions();
                return;
            }
            if (exclude && open is { } context && context.Round == round && context.Pending().Contains(clientId))
            {
                Refuse(context, clientId, reason, clock.GetUtcNow());
                return;
            }
            record.Rejected++;
        }
        metrics?.Refused("update");
        logger.LogWarning("round {Round}: rejected update from client {Client}: {Reason}", RoundRecord.NumberOf(round), clientId, reason);
    }

    /// <summary>Excludes a client from the round for a refused update and sets its backoff. Under the lock.</summary>
    void Refuse(OpenRound context, string clientId, string reason, DateTimeOffset now)
    {
        var record = clients[clientId];
        record.Rejected++;
        record.ConsecutiveRefusals++;
        var backoff = TimeSpan.FromTicks((long)Math.Min(options.MaxRefusalBackoff.Ticks,
            options.RefusalBackoff.Ticks * Math.Pow(2, Math.Min(30, record.ConsecutiveRefusals - 1))));
        record.BackoffUntil = now + backoff;
        context.Refused[clientId] = reason;
        Pulse();
        metrics?.Refused("update");
        logger.LogWarning("round {Round}: rejected update from client {Client}: {Reason}; excluded from round {Round} ({Count} refused in a row, no task for {Backoff:F0} s)",
            RoundRecord.NumberOf(context.Round), clientId, reason, RoundRecord.NumberOf(context.Round), record.ConsecutiveRefusals, backoff.TotalSeconds);
    }

    /// <summary>A consistent snapshot of the open round and every client, for status replies and the admin.</summary>
    public StatusSnapshot Status()
    {
        lock (gate)
        {
            var now = clock.GetUtcNow();
            return new StatusSnapshot(open?.Round, Asynchronous ? arrivals.Count : open?.Accepted.Count ?? 0, stopReason, clients.Values.OrderBy(c => c.Index).Select(c => new ClientSnapshot(
                c.Id, c.LastSeen is { } s && now - s <= options.HeartbeatTimeout, c.LastSeen is { } t ? (now - t).TotalSeconds : -1, c.Accepted, c.Rejected,
                StateOf(c, now))).ToList());
        }
    }

    string StateOf(ClientRecord c, DateTimeOffset now)
    {
        if (c.Removed) return "removed";
        if (Asynchronous)
            return c.HeldVersion is { } v ? $"training version {v}" : IsBackingOff(c.Id, now) ? "backing off" : "idle";
        if (open is not { } round || !round.Assigned.Contains(c.Id)) return "idle";
        if (round.Accepted.ContainsKey(c.Id)) return "submitted";
        if (round.Refused.ContainsKey(c.Id)) return "refused";
        if (round.LeftOut.Contains(c.Id)) return "left out";
        return IsBackingOff(c.Id, now) ? "backing off" : "training";
    }

    /// <summary>Clients heard from within the heartbeat timeout.</summary>
    public int ConnectedCount()
    {
        lock (gate)
        {
            var now = clock.GetUtcNow();
            return clients.Values.Count(c => c.LastSeen is { } s && now - s <= options.HeartbeatTimeout);
        }
    }

    // ---- the client registry, committed with each round ----

    const string RegistryPrefix = "registry/";

    /// <summary>The per-client counters (accepted, refused, last round, removed, refusals in a row) as tensors under
    /// "registry/{id}", for the run's checkpoint. The caller owns the tensors.</summary>
    public IReadOnlyDictionary<string, Tensor> SnapshotState()
    {
        lock (gate)
            return clients.Values.ToDictionary(c => RegistryPrefix + c.Id,
                c => tensor(new long[] { c.Accepted, c.Rejected, c.LastRound, c.Removed ? 1 : 0, c.ConsecutiveRefusals }));
    }

    /// <summary>Restores the counters written by <see cref="SnapshotState"/>; keys for ids no longer in the roster are
    /// ignored.</summary>
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
                // Registries committed before removal and refusal streaks were kept have three fields.
                if (fields.Length >= 5) (record.Removed, record.ConsecutiveRefusals) = (fields[3] != 0, (int)fields[4]);
            }
        }
    }

    /// <summary>Ends the run for polling clients: they are told it finished; frees what asynchronous mode holds.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            finished = true;
            Pulse();
        }
        DisposeAsyncState();
        receivePool?.Dispose();
    }

    void LeaveOut(OpenRound context, string id, string reason)
    {
        if (!context.LeftOut.Add(id)) return;
        Pulse();
        logger.LogWarning("round {Round}: client {Client} left out: {Reason}", RoundRecord.NumberOf(context.Round), id, reason);
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
        public bool Removed { get; set; }
        public int ConsecutiveRefusals { get; set; }
        public DateTimeOffset? BackoffUntil { get; set; }
        public long? DeclaredExamples { get; set; }
        /// <summary>Asynchronous mode: the version this client holds a task on, or null when idle.</summary>
        public int? HeldVersion { get; set; }
        /// <summary>Asynchronous mode: the newest version it delivered an update of, accepted or refused (-1: none since the
        /// server started).</summary>
        public int LastTaskVersion { get; set; } = -1;
        /// <summary>Asynchronous mode: seconds since the server started when it took its task.</summary>
        public double TaskStartedAt { get; set; }
        public bool Uploading { get; set; }
        /// <summary>It polled after the run ended and was told so.</summary>
        public bool ToldFinished { get; set; }
    }
}

/// <summary>The server is stopping: no round opens, and an open one past the grace period is abandoned (not committed).</summary>
public sealed class ServerStoppingException(string message) : OperationCanceledException(message);

/// <summary>What a polling client is told: a task (the round's instructions, whose tensor sets it fetches separately),
/// nothing yet, that the run is over, or that the server is stopping.</summary>
public sealed record TaskOffer(int Round, ClientInstructions? Instructions, bool Finished, string? StopReason = null)
{
    /// <summary>No task yet: the client polls again.</summary>
    public static TaskOffer None { get; } = new(-1, null, false);
    /// <summary>The run is over: the client exits.</summary>
    public static TaskOffer RunFinished { get; } = new(-1, null, true);
    /// <summary>The server is stopping for <paramref name="reason"/>: the client waits and rejoins later.</summary>
    public static TaskOffer Stopping(string reason) => new(-1, null, false, reason);
    /// <summary>True when the offer carries a round to train.</summary>
    public bool HasTask => Round >= 0;
}

/// <summary>One client's line in a status reply.</summary>
/// <param name="Id">The client's roster id.</param>
/// <param name="Connected">Heard from within the heartbeat timeout.</param>
/// <param name="SecondsSinceSeen">Seconds since the client's last call, or -1 if it never called.</param>
/// <param name="Accepted">Updates accepted from it over the run.</param>
/// <param name="Rejected">Updates refused from it over the run.</param>
/// <param name="State">What it is doing in the open round: e.g. "training", "submitted", "left out", "removed".</param>
public sealed record ClientSnapshot(string Id, bool Connected, double SecondsSinceSeen, int Accepted, int Rejected, string State);

/// <summary>The server's state as a status reply shows it.</summary>
/// <param name="OpenRound">The round being collected, or null between rounds.</param>
/// <param name="UpdatesThisRound">Updates accepted so far in the open round.</param>
/// <param name="StopReason">Why the server is stopping, or null while it runs.</param>
/// <param name="Clients">Every roster member, in roster order.</param>
public sealed record StatusSnapshot(int? OpenRound, int UpdatesThisRound, string? StopReason, IReadOnlyList<ClientSnapshot> Clients);

/// <summary>
/// One open round: its tensors (the server's copies, so a slow download cannot outlive them), their wire encoding
/// (made once, on the first fetch, and served to every client) and who did what. Everything is freed when the round
/// loop and every lease holder have let go.
/// </summary>
public sealed class OpenRound
{
    int references = 1;
    /// <summary>Wire bytes of chunks streamed to clients in this round (updated with <see
    /// cref="Interlocked"/>).</summary>
    public long BytesSent;
    /// <summary>Wire bytes of updates read from clients in this round, refused ones included (updated with <see
    /// cref="Interlocked"/>).</summary>
    public long BytesReceived;
    readonly Lazy<EncodedTensors> encodedGlobal;
    readonly Dictionary<string, Lazy<EncodedTensors>> encodedSets;

    /// <summary>Opens round <paramref name="round"/>; the round takes ownership of <paramref name="global"/> and
    /// <paramref name="tensorSets"/> (copies made by the caller) and frees them when the last reference is
    /// released.</summary>
    /// <param name="round">The round number.</param>
    /// <param name="instructions">The round's instructions, sent to every assigned client.</param>
    /// <param name="global">The server's copy of the global adapter.</param>
    /// <param name="tensorSets">The server's copies of the instructions' tensor sets.</param>
    /// <param name="assigned">The roster ids sampled for the round.</param>
    /// <param name="encoding">The transfer encoding of chunks in both directions.</param>
    /// <param name="encodingPool">Where a bf16/fp16 encoding of the global takes its memory from and returns it to
    /// (<see cref="EncodedTensors"/>); null = fresh memory each round.</param>
    public OpenRound(int round, ClientInstructions instructions, Dictionary<string, Tensor> global,
        IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> tensorSets, IReadOnlyList<string> assigned, Federation.Transfer.TransferEncoding encoding,
        ReceivePool? encodingPool = null)
    {
        Round = round;
        Instructions = instructions;
        Global = global;
        TensorSets = tensorSets;
        Assigned = assigned;
        encodedGlobal = new(() => new EncodedTensors(global, encoding, encodingPool));
        encodedSets = tensorSets.ToDictionary(kv => kv.Key, kv => new Lazy<EncodedTensors>(() => new EncodedTensors(kv.Value, encoding, encodingPool)),
            StringComparer.Ordinal);
        long adapterBytes = AdapterTensors.Bytes(global);
        UploadBytes = adapterBytes * (1 + instructions.ReturnedTensorSets.Count);
    }

    /// <summary>The round number.</summary>
    public int Round { get; }
    /// <summary>The round's instructions; their tensors belong to the round loop, so read <see cref="TensorSets"/> instead.</summary>
    public ClientInstructions Instructions { get; }
    /// <summary>The server's copy of the global adapter the clients train from (owned by the round).</summary>
    public IReadOnlyDictionary<string, Tensor> Global { get; }

    /// <summary>The server's copies of the instructions' tensor sets.</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> TensorSets { get; }
    /// <summary>The roster ids sampled for this round.</summary>
    public IReadOnlyList<string> Assigned { get; }

    /// <summary>Decoded bytes an update of this round holds on the server (weights and returned tensor sets, fp32).</summary>
    public long UploadBytes { get; }

    /// <summary>Bumped when the operator aborts the round: leases taken before cannot deliver into it.</summary>
    public int Attempt { get; internal set; }
    /// <summary>Updates taken into the round, by client id; their tensors belong to the round until it is closed and
    /// handed to aggregation.</summary>
    public Dictionary<string, ClientUpdate> Accepted { get; } = new(StringComparer.Ordinal);
    /// <summary>‖y_i − x‖ of each accepted update, for the norm-ratio screen at the close.</summary>
    public Dictionary<string, double> Norms { get; } = new(StringComparer.Ordinal);

    /// <summary>Clients whose update was refused this round, with the reason.</summary>
    public Dictionary<string, string> Refused { get; } = new(StringComparer.Ordinal);

    /// <summary>Updates taken back at the close (norm outliers), freed with the round.</summary>
    internal List<ClientUpdate> Discarded { get; } = new();
    /// <summary>Assigned clients that will not be waited for: silent past the heartbeat timeout, or removed by the
    /// operator.</summary>
    public HashSet<string> LeftOut { get; } = new(StringComparer.Ordinal);

    /// <summary>Assigned clients whose heartbeats count: alive at the open, or heard from since.</summary>
    public HashSet<string> Watched { get; } = new(StringComparer.Ordinal);

    /// <summary>Assigned clients that have been handed the task.</summary>
    public HashSet<string> Taken { get; } = new(StringComparer.Ordinal);

    /// <summary>Assigned clients the round still waits for: neither accepted, refused nor left out.</summary>
    public IEnumerable<string> Pending() => Assigned.Where(id => !Accepted.ContainsKey(id) && !LeftOut.Contains(id) && !Refused.ContainsKey(id));

    /// <summary>The global adapter's chunks, encoded once per round (valid while a lease on the round is held).</summary>
    public IReadOnlyList<TensorChunk> EncodedGlobal => encodedGlobal.Value.Chunks;

    /// <summary>A tensor set's chunks, encoded once per round; null when the round has no such set.</summary>
    public IReadOnlyList<TensorChunk>? EncodedSet(string name) => encodedSets.TryGetValue(name, out var set) ? set.Value.Chunks : null;

    internal void Acquire() => Interlocked.Increment(ref references);

    internal void Release()
    {
        if (Interlocked.Decrement(ref references) != 0) return;
        // The encodings first: an fp32 encoding shares the global's memory.
        if (encodedGlobal.IsValueCreated) encodedGlobal.Value.Dispose();
        foreach (var set in encodedSets.Values)
            if (set.IsValueCreated) set.Value.Dispose();
        AdapterTensors.Dispose(Global);
        foreach (var set in TensorSets.Values) AdapterTensors.Dispose(set);
        foreach (var update in Discarded) update.DisposeTensors();
    }
}

/// <summary>A hold on an open round's tensors while they are streamed or an update is checked against them.</summary>
public sealed class RoundLease(OpenRound context, int attempt, Action? onRelease = null) : IDisposable
{
    int released;
    /// <summary>The round this lease holds.</summary>
    public OpenRound Context { get; } = context;

    /// <summary>The round's <see cref="OpenRound.Attempt"/> when the lease was taken.</summary>
    public int Attempt { get; } = attempt;

    /// <summary>Releases the hold (once; later calls do nothing); the round's tensors are freed when the last hold
    /// goes.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref released, 1) != 0) return;
        onRelease?.Invoke();
        Context.Release();
    }
}
