using System.Diagnostics;
using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Async;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace FedLlm.Network.Server;

/// <summary>
/// The asynchronous side of the registry (<see cref="RemoteClientsOptions.Asynchronous"/>): the
/// <see cref="IAsyncClientPool"/> that <see cref="RealTimeBufferedAsyncServer"/> drives. There is no round barrier: the
/// newest published version is the "open round" every idle roster member may take, once per version; an update names
/// the version it was trained from (the wire's round field), is screened as in a synchronous round (validator, norm and
/// example-count bounds; refused beyond async.max_staleness before its tensors are read), and joins the buffer.
/// </summary>
/// <remarks>
/// A version stays alive (its tensors, for fetches and for the delta y − x_v) while the newest is it, a client holds a task
/// on it, or a buffered update was trained from it. A client that polls holds no task (the client polls only when idle),
/// so a client that crashed and came back simply takes the newest version. A client whose update of a version was
/// accepted or refused gets its next task on a later version (after its refusal backoff): each task's local seed is
/// (version, client), so a second task on the same version would train the same examples. Only when the buffer cannot
/// fill otherwise (no live client training, too few updates) does an idle client train the newest version again.
/// </remarks>
public sealed partial class RemoteClients : IAsyncClientPool
{
    readonly Dictionary<int, OpenRound> versions = new();
    readonly List<BufferedArrival> arrivals = new();
    readonly Stopwatch sinceStart = Stopwatch.StartNew();
    int wanted;

    /// <summary>An accepted update waiting in the buffer, with a hold on the version it was trained from.</summary>
    sealed record BufferedArrival(ClientUpdate Update, OpenRound Base, double Norm, long WireBytes, double StartedAt, double FinishedAt);

    bool Asynchronous => options.Asynchronous;

    /// <inheritdoc/>
    public void Publish(int version, IReadOnlyDictionary<string, Tensor> global, ClientInstructions instructions)
    {
        if (!Asynchronous) throw new InvalidOperationException("Publish needs server options with Asynchronous (async: in server.yaml)");
        var context = new OpenRound(version, instructions, AdapterTensors.Clone(global), new Dictionary<string, IReadOnlyDictionary<string, Tensor>>(StringComparer.Ordinal),
            options.Roster, options.Encoding, Received);
        lock (gate)
        {
            if (open is { } previous && previous.Round >= version)
                throw new InvalidOperationException($"version {version} published after version {previous.Round}");
            open = context;
            versions[version] = context;
            ReleaseUnusedVersions();
            Pulse();
        }
        metrics?.RoundOpened(version);
        logger.LogInformation("version {Version} published (lr {LearningRate:G4}): idle clients train from it", version, instructions.LearningRate);
    }

    /// <inheritdoc/>
    /// <exception cref="ServerStoppingException">The server is stopping and the buffer did not fill within the grace.</exception>
    public async Task<IReadOnlyList<ArrivedUpdate>> TakeAsync(int count, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        List<BufferedArrival> taken;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Task signal;
            lock (gate)
            {
                wanted = count;
                if (stopReason is not null && clock.GetUtcNow() >= stopDeadline)
                    throw new ServerStoppingException($"version {RoundRecord.NumberOf(open?.Round ?? 0)} abandoned: the server is stopping ({stopReason}); " +
                        $"{arrivals.Count} buffered updates were not committed");
                if (arrivals.Count >= count && ScreenBufferedNorms(count))
                {
                    taken = arrivals.Take(count).ToList();
                    arrivals.RemoveRange(0, count);
                    wanted = 0;
                    Pulse();
                    break;
                }
                signal = changed.Task;
            }
            await Task.WhenAny(signal, Task.Delay(TimeSpan.FromMilliseconds(200), clock, cancellationToken));
        }
        // Deltas outside the lock: tensors are never read under it.
        var result = new List<ArrivedUpdate>(taken.Count);
        try
        {
            foreach (var a in taken)
            {
                var delta = TensorMaps.Difference(a.Update.Weights, a.Base.Global);
                double loss = a.Update.Metrics?.GetValueOrDefault("train_loss", double.NaN) ?? double.NaN;
                result.Add(new ArrivedUpdate(a.Update.ClientId, a.Base.Round, delta, a.Update.ExampleCount, loss, a.Norm, a.WireBytes, a.StartedAt, a.FinishedAt));
            }
        }
        catch
        {
            foreach (var r in result) AdapterTensors.Dispose(r.Delta);
            throw;
        }
        finally
        {
            foreach (var a in taken)
            {
                DisposeUpdate(a.Update);
                a.Base.Release();
            }
            lock (gate) ReleaseUnusedVersions();
        }
        logger.LogInformation("version {Version}: took {Count} updates from {Clients} (trained from versions {Bases}); {Left} still buffered",
            RoundRecord.NumberOf(open?.Round ?? 0), result.Count, string.Join(",", result.Select(r => r.ClientId)), string.Join(",", result.Select(r => r.BaseVersion)),
            arrivals.Count);
        return result;
    }

    /// <inheritdoc/>
    public long? BytesSent(int version)
    {
        lock (gate) return versions.TryGetValue(version, out var context) ? Interlocked.Read(ref context.BytesSent) : null;
    }

    /// <summary>max_update_norm_ratio over the first <paramref name="count"/> buffered updates (the next aggregation's):
    /// outliers are refused and dropped. Under the lock; true when none was dropped.</summary>
    bool ScreenBufferedNorms(int count)
    {
        if (options.MaxUpdateNormRatio is not { } ratio) return true;
        var head = arrivals.Take(count).ToList();
        // Keys unique per update: a client readmitted to a stalled version may have two updates of it in the buffer.
        var keys = head.Select((a, i) => $"{a.Update.ClientId} (version {a.Base.Round}, update {i + 1})").ToList();
        var outliers = RoundNormScreen.Outliers(keys.Select((k, i) => (k, head[i].Norm)).ToDictionary(x => x.k, x => x.Norm, StringComparer.Ordinal), ratio);
        if (outliers.Count == 0) return true;
        for (int i = 0; i < head.Count; i++)
        {
            if (!outliers.TryGetValue(keys[i], out var reason)) continue;
            var a = head[i];
            arrivals.Remove(a);
            var record = clients[a.Update.ClientId];
            record.Accepted--;
            RefuseAsync(record, reason, a.Base.Round);
            DisposeUpdate(a.Update);
            a.Base.Release();
        }
        ReleaseUnusedVersions();
        return false;
    }

    /// <summary>A task on the newest version for an idle client: not removed, not backing off, and no update of it for
    /// this version delivered or refused yet (unless the buffer cannot fill otherwise). Under the lock.</summary>
    TaskOffer? AsyncOffer(string clientId)
    {
        var record = clients[clientId];
        // A client polls only when idle: a task it still held was abandoned (it restarted, or gave up on a fetch), and
        // as nothing of it arrived, the client may train that version again.
        if (record.HeldVersion is not null)
        {
            record.HeldVersion = null;
            ReleaseUnusedVersions();
        }
        if (open is not { } newest || record.Removed || IsBackingOff(clientId, clock.GetUtcNow())) return null;
        if (record.LastTaskVersion >= newest.Round)
        {
            if (!BufferCannotFill()) return null;
            logger.LogWarning("version {Version}: {Buffered} of {Wanted} updates and no client is training; client {Client} trains version {Version} again (same local seed)",
                RoundRecord.NumberOf(newest.Round), arrivals.Count, wanted, clientId, newest.Round);
        }
        record.HeldVersion = newest.Round;
        record.TaskStartedAt = sinceStart.Elapsed.TotalSeconds;
        newest.Taken.Add(clientId);
        return new TaskOffer(newest.Round, newest.Instructions, false);
    }

    /// <summary>Whether the aggregation waiting in <see cref="TakeAsync"/> can only complete if a client trains the newest
    /// version a second time: too few updates, no live client holding a task, no upload in flight. Under the lock.</summary>
    bool BufferCannotFill()
    {
        if (wanted == 0 || arrivals.Count >= wanted || uploadBytesInFlight > 0) return false;
        var now = clock.GetUtcNow();
        return !clients.Values.Any(c => c.HeldVersion is not null && c.LastSeen is { } seen && now - seen <= options.HeartbeatTimeout);
    }

    /// <summary>The version a client holds a task on. Under the lock.</summary>
    OpenRound? HeldContext(string clientId, int version, out string reason)
    {
        var record = clients[clientId];
        if (record.HeldVersion != version || !versions.TryGetValue(version, out var context))
        {
            reason = $"client {clientId} holds no task on version {version} (it holds {(record.HeldVersion is { } v ? $"version {v}" : "none")}); poll for a task on the newest version";
            return null;
        }
        reason = "";
        return context;
    }

    /// <summary>The header checks of an asynchronous update (version held, staleness bound); null = go on reading it. Under the lock.</summary>
    string? AsyncSubmissionProblem(string clientId, int version, out OpenRound? context)
    {
        context = HeldContext(clientId, version, out string reason);
        if (context is null) return reason;
        int newest = open!.Round;
        if (options.MaxStaleness is { } most && newest - version > most)
        {
            clients[clientId].HeldVersion = null;
            clients[clientId].LastTaskVersion = Math.Max(clients[clientId].LastTaskVersion, version);
            ReleaseUnusedVersions();
            return $"update trained from version {version} is {newest - version} versions stale (async.max_staleness {most}); not read. " +
                $"Poll for a task on version {newest}";
        }
        return null;
    }

    /// <summary>Buffers an accepted asynchronous update. Under the lock; null on success.</summary>
    string? AcceptAsync(RoundLease lease, ClientUpdate update, double norm, long wireBytes)
    {
        var context = lease.Context;
        var record = clients[update.ClientId];
        if (record.HeldVersion != context.Round) return $"client {update.ClientId} no longer holds its task on version {context.Round} (it polled again)";
        if (record.Removed) return $"client {update.ClientId} was removed by the operator";
        context.Acquire();
        arrivals.Add(new BufferedArrival(update, context, norm, wireBytes, record.TaskStartedAt, sinceStart.Elapsed.TotalSeconds));
        record.HeldVersion = null;
        record.LastTaskVersion = Math.Max(record.LastTaskVersion, context.Round);
        record.Accepted++;
        record.LastRound = context.Round;
        record.ConsecutiveRefusals = 0;
        record.BackoffUntil = null;
        Pulse();
        logger.LogInformation("version {Version}: accepted update from client {Client} trained from version {Base} ({Examples} examples); {Buffered} buffered",
            RoundRecord.NumberOf(open?.Round ?? context.Round), update.ClientId, context.Round, update.ExampleCount, arrivals.Count);
        return null;
    }

    /// <summary>A refused asynchronous update: counted, the client backs off and gets its next task on a later version. Under the lock.</summary>
    void RefuseAsync(ClientRecord record, string reason, int version)
    {
        record.Rejected++;
        record.ConsecutiveRefusals++;
        record.HeldVersion = null;
        record.LastTaskVersion = Math.Max(record.LastTaskVersion, version);
        var backoff = TimeSpan.FromTicks((long)Math.Min(options.MaxRefusalBackoff.Ticks,
            options.RefusalBackoff.Ticks * Math.Pow(2, Math.Min(30, record.ConsecutiveRefusals - 1))));
        record.BackoffUntil = clock.GetUtcNow() + backoff;
        Pulse();
        metrics?.Refused("update");
        logger.LogWarning("version {Version}: rejected update from client {Client} trained from version {Base}: {Reason}; its next task is on a later version ({Count} refused in a row, no task for {Backoff:F0} s)",
            RoundRecord.NumberOf(open?.Round ?? version), record.Id, version, reason, record.ConsecutiveRefusals, backoff.TotalSeconds);
    }

    /// <summary>Frees the versions no one needs: not the newest, no task held on it, no buffered update from it. Under the lock.</summary>
    void ReleaseUnusedVersions()
    {
        var held = clients.Values.Select(c => c.HeldVersion).OfType<int>().ToHashSet();
        var buffered = arrivals.Select(a => a.Base.Round).ToHashSet();
        foreach (var (version, context) in versions.ToList())
        {
            if (context == open || held.Contains(version) || buffered.Contains(version)) continue;
            versions.Remove(version);
            context.Release();
        }
    }

    /// <summary>Frees the buffered updates and every version (the run's end or an abandoned version).</summary>
    void DisposeAsyncState()
    {
        List<BufferedArrival> dropped;
        List<OpenRound> live;
        lock (gate)
        {
            dropped = arrivals.ToList();
            arrivals.Clear();
            live = versions.Values.ToList();
            versions.Clear();
            if (Asynchronous) open = null;
        }
        foreach (var a in dropped)
        {
            DisposeUpdate(a.Update);
            a.Base.Release();
        }
        foreach (var context in live) context.Release();
    }
}
