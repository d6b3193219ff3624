using System.Diagnostics;
using FedLlm.Federation;
using FedLlm.Federation.SecureAggregation;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace FedLlm.Network.Server;

/// <summary>
/// Secure aggregation over the gRPC federation: the networked counterpart of <see cref="SecureAggregationClients"/>.
/// A round whose instructions carry secure-aggregation settings is handed out as usual, but each client answers it by
/// advertising its keys (SecAggExchange) instead of sending its update; the four phases of SecAgg(+) then run between
/// the clients and one <see cref="SecAggServer"/> here, and the round delivers the survivors' unmasked sum as the one
/// secure aggregate. Rounds without the settings pass through to the inner executor unchanged.
/// </summary>
/// <remarks>
/// <para>Phases and deadlines: the advertise-keys phase closes with the round (<see cref="RemoteClients"/>: every
/// assigned client answered, was left out for missed heartbeats, or the round deadline passed), so it includes local
/// training. Each later phase (share keys, masked input, unmask) closes when every client still in the protocol has
/// answered, when the ones missing have all missed their heartbeats, or at its own deadline: a quarter of the round's
/// deadline, counted from the close of the phase before. Below the threshold the round fails with a
/// <see cref="SecureAggregationException"/> naming the phase and the missing clients; above it, the dropped clients'
/// masks are rebuilt from Shamir shares, exactly as in simulation.</para>
/// <para>The task's config gains <see cref="ParticipantsKey"/>: the round's client ids in participant order, so each
/// client knows its participant id.</para>
/// </remarks>
public sealed class SecureRemoteClients : IClientExecutor, IDisposable
{
    /// <summary>Instruction config key: the round's participants' client ids, comma-separated, in participant order.</summary>
    public const string ParticipantsKey = "secagg_participants";

    readonly IClientExecutor inner;
    readonly RemoteClients remote;
    readonly SecAggSessions sessions;
    readonly ILogger logger;
    readonly Dictionary<int, (long Sent, long Received)> traffic = new();

    /// <summary>Secure rounds over <paramref name="remote"/>'s clients, whose rounds <paramref name="inner"/> (the
    /// registry itself, or a decorator of it) runs.</summary>
    /// <param name="inner">Hands out the round and collects the answers (the clients' key advertisements).</param>
    /// <param name="remote">The client registry: roster, deadlines, heartbeats, stop requests.</param>
    /// <param name="sessions">Where the gRPC service finds the open secure round.</param>
    /// <param name="logger">Where phase closes and dropouts are logged.</param>
    public SecureRemoteClients(IClientExecutor inner, RemoteClients remote, SecAggSessions sessions, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(remote);
        ArgumentNullException.ThrowIfNull(sessions);
        this.inner = inner;
        this.remote = remote;
        this.sessions = sessions;
        this.logger = logger;
    }

    /// <summary>How long each phase after the keys may take: a quarter of the round's deadline.</summary>
    public TimeSpan PhaseDeadline => remote.Options.RoundDeadline / 4;

    /// <inheritdoc/>
    /// <remarks>Evaluations are scores, not updates: they go to the inner executor unmasked.</remarks>
    public Task<IReadOnlyList<ClientEvaluation>> EvaluateRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default) =>
        inner.EvaluateRoundAsync(round, clients, global, instructions, cancellationToken);

    /// <inheritdoc/>
    public async Task<IReadOnlyList<ClientUpdate>> TrainRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default)
    {
        var options = SecureAggregationOptions.FromConfig(instructions);
        if (options is null) return await inner.TrainRoundAsync(round, clients, global, instructions, cancellationToken);
        var session = new SecAggRound(round, clients.Select(i => remote.Options.Roster[i]).ToList(), SecureInput.Length(global)) { Observer = sessions.Observer };
        var config = new Dictionary<string, string>(instructions.Config, StringComparer.Ordinal) { [ParticipantsKey] = string.Join(",", session.Participants) };
        sessions.Open(session);
        IReadOnlyList<ClientUpdate> answers = [];
        try
        {
            answers = await inner.TrainRoundAsync(round, clients, global, instructions with { Config = config }, cancellationToken);
            var clock = Stopwatch.StartNew();
            var result = await RunPhasesAsync(session, answers, options, SecureInput.Length(global), cancellationToken);
            var survivors = result.Survivors.Select(p =>
            {
                var (examples, metrics) = session.Report(p);
                return new ClientUpdate(session.Participants[p], new Dictionary<string, Tensor>(), examples, metrics);
            }).ToList();
            var (wireSent, wireReceived) = session.WireBytes;
            var measured = inner.MeasuredTraffic(round) ?? (0, 0);
            lock (traffic) traffic[round] = (measured.Sent + wireSent, measured.Received + wireReceived);
            logger.LogInformation("round {Round}: secure aggregation unmasked the sum of {Survivors} ({Dropped} dropped), {Bytes} protocol bytes, {Seconds:F2} s",
                RoundRecord.NumberOf(round), string.Join(",", survivors.Select(s => s.ClientId)), result.DroppedPerPhase.Sum(), session.PayloadBytes, clock.Elapsed.TotalSeconds);
            return [SecureAggregationClients.AggregateOf(result.Sum, survivors, result.DroppedPerPhase.Sum(), global, options, session.PayloadBytes, clock.Elapsed.TotalSeconds)];
        }
        catch (Exception e)
        {
            session.Fail(e is SecureAggregationException ? e.Message : $"round {RoundRecord.NumberOf(round)}: secure aggregation stopped ({e.Message})");
            throw;
        }
        finally
        {
            session.CloseRemaining();
            sessions.Close(session);
            foreach (var a in answers) a.DisposeTensors();
        }
    }

    async Task<SecAggResult> RunPhasesAsync(SecAggRound session, IReadOnlyList<ClientUpdate> answers, SecureAggregationOptions options, int length,
        CancellationToken cancellationToken)
    {
        int n = session.Participants.Count;
        var server = new SecAggServer(session.Round, Enumerable.Range(0, n).ToList(), options.Threshold!.Value, options.Neighbours, length);
        var answered = answers.Select(a => session.ParticipantOf(a.ClientId)).OfType<int>().ToHashSet();
        var adverts = session.Delivered<AdvertiseKeys>(SecAggPhase.AdvertiseKeys).Where(kv => answered.Contains(kv.Key)).Select(kv => kv.Value).ToList();

        var rosters = Step(session, SecAggPhase.AdvertiseKeys, Enumerable.Range(0, n).ToList(), adverts.Select(a => a.Client).ToList(), () => server.CollectKeys(adverts));
        session.Close(SecAggPhase.AdvertiseKeys, rosters.ToDictionary(r => r.Client, r => (object?)r));

        var shared = await CollectAsync<SharedKeys>(session, SecAggPhase.ShareKeys, rosters.Select(r => r.Client).ToList(), cancellationToken);
        var requests = Step(session, SecAggPhase.ShareKeys, rosters.Select(r => r.Client).ToList(), shared.Select(s => s.Client).ToList(), () => server.CollectShares(shared));
        session.Close(SecAggPhase.ShareKeys, requests.ToDictionary(r => r.Client, r => (object?)r));

        var masked = await CollectAsync<MaskedInput>(session, SecAggPhase.MaskedInput, requests.Select(r => r.Client).ToList(), cancellationToken);
        var unmask = Step(session, SecAggPhase.MaskedInput, requests.Select(r => r.Client).ToList(), masked.Select(m => m.Client).ToList(), () => server.CollectMaskedInputs(masked));
        session.Close(SecAggPhase.MaskedInput, unmask.Survivors.ToDictionary(s => s, _ => (object?)unmask));

        var revealed = await CollectAsync<UnmaskShares>(session, SecAggPhase.Unmask, unmask.Survivors, cancellationToken);
        var result = Step(session, SecAggPhase.Unmask, unmask.Survivors, revealed.Select(r => r.Client).ToList(), () => server.Unmask(revealed));
        session.Close(SecAggPhase.Unmask, revealed.ToDictionary(r => r.Client, _ => (object?)null));
        return result;
    }

    /// <summary>Runs the server's step for a phase; a failure is rethrown naming the phase and the clients that did not
    /// answer it.</summary>
    T Step<T>(SecAggRound session, SecAggPhase phase, IReadOnlyList<int> expected, IReadOnlyList<int> answered, Func<T> step)
    {
        var missing = expected.Except(answered).Order().Select(p => session.Participants[p]).ToList();
        if (missing.Count > 0)
            logger.LogWarning("round {Round}: secure aggregation, {Phase} phase: no message from {Missing}", RoundRecord.NumberOf(session.Round), SecAggRound.Name(phase), string.Join(",", missing));
        try
        {
            return step();
        }
        catch (SecureAggregationException e)
        {
            throw new SecureAggregationException($"round {RoundRecord.NumberOf(session.Round)}: secure aggregation failed in the {SecAggRound.Name(phase)} phase: {e.Message}; missing clients: {(missing.Count == 0 ? "none" : string.Join(", ", missing))}",
                e.Client is { } p && p >= 0 && p < session.Participants.Count ? p : null);
        }
    }

    /// <summary>Waits for the phase's messages from <paramref name="expected"/>: until all arrived, the missing ones all
    /// missed their heartbeats, or the phase deadline.</summary>
    async Task<List<T>> CollectAsync<T>(SecAggRound session, SecAggPhase phase, IReadOnlyList<int> expected, CancellationToken cancellationToken) where T : class
    {
        var deadline = DateTime.UtcNow + PhaseDeadline;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var signal = session.Changed;
            var delivered = session.Delivered<T>(phase);
            var missing = expected.Where(p => !delivered.ContainsKey(p)).Select(p => session.Participants[p]).ToList();
            if (missing.Count == 0) break;
            if (remote.StopReason is { } stopping)
                throw new ServerStoppingException($"round {RoundRecord.NumberOf(session.Round)} abandoned in the {SecAggRound.Name(phase)} phase of secure aggregation: the server is stopping ({stopping})");
            var connected = remote.Status().Clients.Where(c => c.Connected && c.State != "removed").Select(c => c.Id).ToHashSet(StringComparer.Ordinal);
            if (missing.All(id => !connected.Contains(id)))
            {
                logger.LogWarning("round {Round}: secure aggregation, {Phase} phase: {Missing} missed heartbeats", RoundRecord.NumberOf(session.Round), SecAggRound.Name(phase), string.Join(",", missing));
                break;
            }
            if (DateTime.UtcNow >= deadline)
            {
                logger.LogWarning("round {Round}: secure aggregation, {Phase} phase: {Missing} missed the phase deadline ({Seconds:F0} s)", RoundRecord.NumberOf(session.Round),
                    SecAggRound.Name(phase), string.Join(",", missing), PhaseDeadline.TotalSeconds);
                break;
            }
            await Task.WhenAny(signal, Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken));
        }
        return session.Delivered<T>(phase).Where(kv => expected.Contains(kv.Key)).OrderBy(kv => kv.Key).Select(kv => kv.Value).ToList();
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> SnapshotState() => inner.SnapshotState();

    /// <inheritdoc/>
    public void RestoreState(IReadOnlyDictionary<string, Tensor> state) => inner.RestoreState(state);

    /// <summary>The inner executor's bytes (the adapter sent, no update received), plus the exchange's requests and
    /// replies in secure rounds.</summary>
    public (long Sent, long Received)? MeasuredTraffic(int round)
    {
        lock (traffic)
            if (traffic.TryGetValue(round, out var own)) return own;
        return inner.MeasuredTraffic(round);
    }

    /// <summary>Does not dispose the inner executor: its creator owns it.</summary>
    public void Dispose() { }
}
