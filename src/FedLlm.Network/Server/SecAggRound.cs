using FedLlm.Federation;
using FedLlm.Federation.SecureAggregation;
using Google.Protobuf;

namespace FedLlm.Network.Server;

/// <summary>
/// The mailbox of one secure-aggregation round on the server, between the gRPC calls of the clients and the round loop
/// (<see cref="SecureRemoteClients"/>): clients deliver each phase's message here and wait for the phase to close; the
/// round loop takes what arrived, runs <see cref="SecAggServer"/>'s step, and posts each client's reply. It holds
/// public keys, encrypted shares, masked inputs and revealed shares, never an unmasked update.
/// </summary>
/// <remarks>
/// <para>Identity: the participants are the round's assigned clients in ordinal order of client id (as in simulation),
/// and a message is taken only when its participant id is the authenticated caller's (with mutual TLS, the certificate's
/// id), so no client can speak for another.</para>
/// <para>Thread-safe: one lock over the mailbox; waiters are woken by a signal that is replaced on every change.</para>
/// </remarks>
public sealed class SecAggRound
{
    readonly object gate = new();
    readonly Dictionary<string, int> participantOf;
    readonly Dictionary<int, object>[] inbox = [new(), new(), new(), new()];
    readonly Dictionary<int, object?>?[] replies = new Dictionary<int, object?>?[4];
    readonly Dictionary<int, (long ExampleCount, IReadOnlyDictionary<string, double> Metrics)> reports = new();
    readonly Dictionary<(int Participant, Protocol.SecAggPhase Phase), PartialMessage> partial = new();
    readonly long maxPayloadBytes;
    string? failure;
    TaskCompletionSource changed = NewSignal();
    long payloadBytes, wireReceived, wireSent;

    /// <summary>Round <paramref name="round"/> among <paramref name="assigned"/> (the round's sampled client ids), whose
    /// inputs have <paramref name="vectorLength"/> ring elements.</summary>
    /// <param name="round">The round.</param>
    /// <param name="assigned">The round's sampled client ids.</param>
    /// <param name="vectorLength">Ring elements of an input; bounds what a message assembled from parts may hold.</param>
    public SecAggRound(int round, IReadOnlyCollection<string> assigned, int vectorLength)
    {
        ArgumentNullException.ThrowIfNull(assigned);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vectorLength);
        // The largest message is a masked input (4 bytes per element) or a client's shares and roster (under 1 KiB per
        // other client); anything longer is refused before it is buffered.
        maxPayloadBytes = 4L * vectorLength + (64 << 10) + 1024L * assigned.Count;
        Round = round;
        Participants = assigned.Order(StringComparer.Ordinal).ToList();
        participantOf = Participants.Select((id, i) => (id, i)).ToDictionary(p => p.id, p => p.i, StringComparer.Ordinal);
    }

    /// <summary>The round.</summary>
    public int Round { get; }

    /// <summary>Client ids by participant id (ordinal order).</summary>
    public IReadOnlyList<string> Participants { get; }

    /// <summary>Told every message the server takes (client id, message), before it is used: what the server sees.</summary>
    public Action<string, SecAggClientMessage>? Observer { get; init; }

    /// <summary>The participant id of <paramref name="clientId"/>, or null when it is not in the round.</summary>
    public int? ParticipantOf(string clientId) => participantOf.TryGetValue(clientId, out int p) ? p : null;

    /// <summary>Bytes of protocol messages (their codec form) in both directions, as the simulation counts them.</summary>
    public long PayloadBytes => Interlocked.Read(ref payloadBytes);

    /// <summary>Wire bytes of the exchange's requests (to the server) and replies (to the clients).</summary>
    public (long Sent, long Received) WireBytes => (Interlocked.Read(ref wireSent), Interlocked.Read(ref wireReceived));

    /// <summary>Signals any change: a delivered message, a closed phase, a failure.</summary>
    public Task Changed
    {
        get { lock (gate) return changed.Task; }
    }

    /// <summary>Takes a client's message of one phase; returns null, or why it is refused.</summary>
    /// <param name="clientId">The authenticated caller.</param>
    /// <param name="message">Its message (non-null <see cref="SecAggClientMessage.Message"/>).</param>
    /// <param name="payload">The message's codec bytes.</param>
    /// <param name="wireBytes">The request's size on the wire.</param>
    public string? Deliver(string clientId, SecAggClientMessage message, int payload, int wireBytes)
    {
        ArgumentNullException.ThrowIfNull(message);
        string phase = Name(message.Phase);
        Interlocked.Add(ref wireReceived, wireBytes);
        lock (gate)
        {
            if (message.Round != Round) return $"a {phase} message for round {RoundRecord.NumberOf(message.Round)} while round {RoundRecord.NumberOf(Round)} runs secure aggregation";
            if (ParticipantOf(clientId) is not { } me) return $"client {clientId} is not a participant of round {RoundRecord.NumberOf(Round)}";
            if (failure is not null) return failure;
            if (replies[(int)message.Phase] is not null) return $"the {phase} phase of round {RoundRecord.NumberOf(Round)} has closed; client {clientId}'s message came too late";
            int claimed = message.Message switch
            {
                AdvertiseKeys a => a.Client,
                SharedKeys s => s.Client,
                MaskedInput m => m.Client,
                UnmaskShares u => u.Client,
                _ => -1,
            };
            if (claimed != me) return $"client {clientId} is participant {me} of round {RoundRecord.NumberOf(Round)}, but its {phase} message speaks for participant {claimed}";
            // Keys come only under a submission lease, which RemoteClients grants once per client and attempt: keys
            // already here are from an attempt the operator aborted (never sent to anyone), and the new ones replace them.
            if (message.Phase == SecAggPhase.AdvertiseKeys) inbox[0][me] = message.Message!;
            else if (!inbox[(int)message.Phase].TryAdd(me, message.Message!)) return $"client {clientId} sent its {phase} message twice";
            if (message.Phase == SecAggPhase.AdvertiseKeys) reports[me] = (message.ExampleCount, message.Metrics);
            Interlocked.Add(ref payloadBytes, payload);
            Pulse();
        }
        Observer?.Invoke(clientId, message);
        return null;
    }

    /// <summary>Adds one part of a message sent in parts (<see cref="SecAggWireMapping.ToWireParts"/>): the whole request
    /// once its last part has arrived, else null (<paramref name="refusal"/> says why when the part is refused: out of
    /// order, too many, or more bytes than any message of this round can hold).</summary>
    /// <param name="clientId">The authenticated caller.</param>
    /// <param name="part">The request carrying the part.</param>
    /// <param name="refusal">Why the part is refused, or null.</param>
    public Protocol.SecAggRequest? Assemble(string clientId, Protocol.SecAggRequest part, out string? refusal)
    {
        ArgumentNullException.ThrowIfNull(part);
        refusal = null;
        lock (gate)
        {
            if (ParticipantOf(clientId) is not { } me)
            {
                refusal = $"client {clientId} is not a participant of round {RoundRecord.NumberOf(Round)}";
                return null;
            }
            var key = (me, part.Phase);
            long maxParts = maxPayloadBytes / SecAggWireMapping.MaxPartBytes + 1;
            if (part.Parts < 2 || part.Parts > maxParts || part.Part < 0 || part.Part >= part.Parts)
                refusal = $"part {part.Part} of {part.Parts}: a message of this round has at most {maxParts} parts";
            else if (part.Part == 0) partial[key] = new PartialMessage(part);
            else if (!partial.TryGetValue(key, out var started) || started.First.Parts != part.Parts || started.Next != part.Part)
                refusal = $"part {part.Part} of {part.Parts} out of order (expected part {(partial.TryGetValue(key, out var s) ? s.Next : 0)})";
            if (refusal is null && partial[key].Bytes.Length + part.Payload.Length > maxPayloadBytes)
                refusal = $"a message of more than {maxPayloadBytes} bytes, more than any message of this round holds";
            if (refusal is not null)
            {
                partial.Remove(key);
                return null;
            }
            var message = partial[key];
            part.Payload.WriteTo(message.Bytes);
            message.Next++;
            if (message.Next < part.Parts) return null;
            partial.Remove(key);
            var whole = message.First.Clone();
            whole.Payload = ByteString.CopyFrom(message.Bytes.GetBuffer(), 0, (int)message.Bytes.Length);
            whole.Part = 0;
            whole.Parts = 1;
            return whole;
        }
    }

    /// <summary>Takes back an advertisement whose answer the round did not accept (it closed meanwhile).</summary>
    public void Withdraw(string clientId)
    {
        lock (gate)
            if (ParticipantOf(clientId) is { } me && replies[0] is null)
            {
                inbox[0].Remove(me);
                reports.Remove(me);
            }
    }

    /// <summary>Waits up to <paramref name="wait"/> for <paramref name="phase"/> to close; then the server's message for
    /// the caller (null after unmasking), else not ready.</summary>
    /// <exception cref="SecureAggregationException">The round failed, or closed the phase without the caller.</exception>
    public async Task<(bool Ready, object? Next)> AwaitReplyAsync(string clientId, SecAggPhase phase, TimeSpan wait, CancellationToken cancellationToken)
    {
        var until = DateTime.UtcNow + wait;
        while (true)
        {
            Task signal;
            lock (gate)
            {
                if (ParticipantOf(clientId) is not { } me) throw new SecureAggregationException($"client {clientId} is not a participant of round {RoundRecord.NumberOf(Round)}");
                if (failure is not null) throw new SecureAggregationException(failure);
                if (replies[(int)phase] is { } posted)
                {
                    if (posted.TryGetValue(me, out var next)) return (true, next);
                    throw new SecureAggregationException(inbox[(int)phase].ContainsKey(me)
                        ? $"round {RoundRecord.NumberOf(Round)}: the server went on without client {clientId} after the {Name(phase)} phase"
                        : $"round {RoundRecord.NumberOf(Round)}: the {Name(phase)} phase closed without client {clientId}'s message");
                }
                signal = changed.Task;
            }
            var left = until - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) return (false, null);
            await Task.WhenAny(signal, Task.Delay(left, cancellationToken));
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    /// <summary>Counts a reply's wire and payload bytes.</summary>
    public void Sent(int wireBytes, int payload)
    {
        Interlocked.Add(ref wireSent, wireBytes);
        Interlocked.Add(ref payloadBytes, payload);
    }

    /// <summary>The messages delivered so far in <paramref name="phase"/>, by participant id.</summary>
    public IReadOnlyDictionary<int, T> Delivered<T>(SecAggPhase phase) where T : class
    {
        lock (gate) return inbox[(int)phase].ToDictionary(kv => kv.Key, kv => (T)kv.Value);
    }

    /// <summary>The example count and metrics participant <paramref name="participant"/> sent with its keys.</summary>
    public (long ExampleCount, IReadOnlyDictionary<string, double> Metrics) Report(int participant)
    {
        lock (gate) return reports[participant];
    }

    /// <summary>Closes <paramref name="phase"/>: no further message of it is taken, and each participant in
    /// <paramref name="next"/> gets its reply.</summary>
    public void Close(SecAggPhase phase, IReadOnlyDictionary<int, object?> next)
    {
        lock (gate)
        {
            replies[(int)phase] = next.ToDictionary(kv => kv.Key, kv => kv.Value);
            Pulse();
        }
    }

    /// <summary>Closes every phase that was not yet, without replies: late messages are refused.</summary>
    public void CloseRemaining()
    {
        lock (gate)
        {
            for (int p = 0; p < replies.Length; p++) replies[p] ??= new Dictionary<int, object?>();
            Pulse();
        }
    }

    /// <summary>Ends the round with <paramref name="reason"/>, told to every waiting client.</summary>
    public void Fail(string reason)
    {
        lock (gate)
        {
            failure ??= reason;
            Pulse();
        }
    }

    /// <summary>The phase as docs and messages name it.</summary>
    public static string Name(SecAggPhase phase) => phase switch
    {
        SecAggPhase.AdvertiseKeys => "advertise-keys",
        SecAggPhase.ShareKeys => "share-keys",
        SecAggPhase.MaskedInput => "masked-input",
        SecAggPhase.Unmask => "unmask",
        _ => phase.ToString(),
    };

    void Pulse()
    {
        var previous = changed;
        changed = NewSignal();
        previous.TrySetResult();
    }

    static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    sealed class PartialMessage(Protocol.SecAggRequest first)
    {
        public Protocol.SecAggRequest First { get; } = first;
        public MemoryStream Bytes { get; } = new();
        public int Next { get; set; }
    }
}

/// <summary>The secure-aggregation round the server runs now, if any, shared by the gRPC service and the round loop.</summary>
public sealed class SecAggSessions
{
    readonly object gate = new();
    SecAggRound? current;

    /// <summary>Told every message the server takes in any round (client id, message); for tests and audits.</summary>
    public Action<string, SecAggClientMessage>? Observer { get; init; }

    /// <summary>The open round numbered <paramref name="round"/>, or null.</summary>
    public SecAggRound? Find(int round)
    {
        lock (gate) return current is { } c && c.Round == round ? c : null;
    }

    /// <summary>Makes <paramref name="round"/> the open one.</summary>
    public void Open(SecAggRound round)
    {
        lock (gate) current = round;
    }

    /// <summary>Closes <paramref name="round"/> if it is the open one.</summary>
    public void Close(SecAggRound round)
    {
        lock (gate)
            if (current == round) current = null;
    }
}
