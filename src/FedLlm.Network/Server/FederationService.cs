using FedLlm.Federation;
using FedLlm.Federation.Transfer;
using FedLlm.Network.Protocol;
using FedLlm.Network.Transfer;
using FedLlm.Peft;
using FedLlm.Runs;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace FedLlm.Network.Server;

/// <summary>What the handshake tells a joining client about the run.</summary>
public sealed record RunDescription(string RunId, ModelFingerprint Model, LoraOptions Lora, FederationOptions Federation, LocalObjective Objective)
{
    /// <summary>The run's rounds use secure aggregation: clients must speak the SecAggExchange (protocol v2.2 or later).</summary>
    public bool SecureAggregation { get; init; }

    /// <summary>Each client's held-out share for per-client evaluation (data.client_eval_fraction; 0 = none): clients
    /// must speak protocol v2.3 or later.</summary>
    public double ClientEvalFraction { get; init; }

    /// <summary>The server takes transfers over its bulk channel too (server.bulk_transfer), and says so at join.</summary>
    public bool BulkTransfer { get; init; } = true;
}

/// <summary>
/// The gRPC face of <see cref="RemoteClients"/>: authenticates every call, streams tensors in chunks and reads updates
/// under the size limit. It holds no round logic of its own. Every refused call is logged once (rate-limited) with the
/// peer's address by <see cref="RefusalLog"/>.
/// </summary>
public sealed partial class FederationService(RemoteClients clients, RunDescription run, IClientAuthenticator authenticator,
    Func<(int NextRound, string? LastMetrics)> progress, RefusalLog refusals, ILogger<FederationService> logger) : Protocol.Federation.FederationBase
{
    /// <summary>The protocol minor that brought the SecAggExchange.</summary>
    public const uint SecureAggregationMinor = 2;

    /// <summary>The first minor version whose clients hold out their own split and answer per-client evaluation tasks.</summary>
    public const uint ClientEvaluationMinor = 3;

    /// <summary>The authenticated caller, who must be on the roster and not removed.</summary>
    string Identify(ServerCallContext context) => Identify(CallerCredentials.Of(context), context.Peer);

    /// <summary>The authenticated caller (from its credentials, wherever they came), who must be on the roster and not
    /// removed; a refusal is logged with <paramref name="peer"/>.</summary>
    string Identify(CallerCredentials caller, string peer)
    {
        string id = Authenticate(caller, peer);
        if (clients.RosterIndex(id) is null)
            throw Refuse(peer, "roster", StatusCode.PermissionDenied, $"client '{id}' is not on this run's roster; ask the operator to add it to server.roster");
        if (clients.IsRemoved(id))
            throw Refuse(peer, "removed", StatusCode.PermissionDenied, $"client '{id}' was removed from this run by the operator");
        return id;
    }

    string Authenticate(CallerCredentials caller, string peer)
    {
        try
        {
            return authenticator.Authenticate(caller);
        }
        catch (RpcException e)
        {
            refusals.Refused(e.StatusCode == StatusCode.PermissionDenied ? "roster" : "auth", peer, e.Status.Detail);
            throw;
        }
    }

    RpcException Refuse(ServerCallContext context, string kind, StatusCode code, string reason) => Refuse(context.Peer, kind, code, reason);

    RpcException Refuse(string peer, string kind, StatusCode code, string reason)
    {
        refusals.Refused(kind, peer, reason);
        return new RpcException(new Status(code, reason));
    }

    /// <summary>The handshake: authenticates the caller, checks its protocol version, base-model fingerprint and task,
    /// records its declared example count, and answers with the run description and its roster index.</summary>
    public override Task<JoinReply> Join(JoinRequest request, ServerCallContext context)
    {
        string id = Authenticate(CallerCredentials.Of(context), context.Peer);
        if (clients.StopReason is { } stopping)
            throw Refuse(context, "stopping", StatusCode.Unavailable, $"the server is stopping ({stopping}); join again when it is back");
        if (ProtocolInfo.Incompatibility(request.Protocol) is { } incompatible)
            throw Refuse(context, "protocol", StatusCode.FailedPrecondition, incompatible);
        if (run.SecureAggregation && request.Protocol.Minor < SecureAggregationMinor)
            throw Refuse(context, "protocol", StatusCode.FailedPrecondition,
                $"this run uses secure aggregation, which needs fedllm.federation v{ProtocolInfo.Major}.{SecureAggregationMinor} or later; the client speaks v{request.Protocol.Major}.{request.Protocol.Minor}; update FedLlm on the client");
        if (run.ClientEvalFraction > 0 && request.Protocol.Minor < ClientEvaluationMinor)
            throw Refuse(context, "protocol", StatusCode.FailedPrecondition,
                $"this run scores each client on its own held-out split (data.client_eval_fraction), which needs fedllm.federation v{ProtocolInfo.Major}.{ClientEvaluationMinor} or later; the client speaks v{request.Protocol.Major}.{request.Protocol.Minor}; update FedLlm on the client");
        if (request.ClientId != id)
            throw Refuse(context, "auth", StatusCode.PermissionDenied, $"join names client '{request.ClientId}' but the caller authenticated as '{id}'");
        id = Identify(context);
        if (request.ModelFingerprint != run.Model.Combined)
        {
            string detail = request.ModelFiles is { } files ? run.Model.Differences(files.Sha256) : "the client sent no file hashes";
            throw Refuse(context, "model", StatusCode.FailedPrecondition,
                $"base model mismatch: {detail}; the client must use the server's base model (config.json and *.safetensors)");
        }
        if (request.Task.Length > 0 && request.Task != run.Objective.Task)
            throw Refuse(context, "task", StatusCode.FailedPrecondition, $"task mismatch: the client's data is for '{request.Task}', this run trains '{run.Objective.Task}'");
        if (request.ExampleCount < 0)
            throw Refuse(context, "protocol", StatusCode.FailedPrecondition, $"client '{id}' declared {request.ExampleCount} examples");
        // Zero: the client has not read its data yet (it needs this reply's settings); it joins again with the count.
        clients.Join(id, request.ExampleCount > 0 ? request.ExampleCount : null);
        return Task.FromResult(new JoinReply
        {
            Protocol = ProtocolInfo.Current,
            RunId = run.RunId,
            RosterIndex = clients.RosterIndex(id)!.Value,
            Lora = WireMapping.ToWire(run.Lora),
            Training = WireMapping.ToWire(run.Federation.ClientTraining),
            Objective = WireMapping.ToWire(run.Objective),
            ClientEvalFraction = run.ClientEvalFraction,
            UpdateEncoding = clients.Options.Encoding.ToString(),
            HeartbeatSeconds = clients.Options.HeartbeatInterval.TotalSeconds,
            BulkTransfer = run.BulkTransfer,
        });
    }

    /// <summary>Long poll: waits up to the requested time (at most 60 s) for a task for the caller, and returns it, an
    /// empty reply, or that the run has finished or the server is stopping.</summary>
    public override async Task<WaitForTaskReply> WaitForTask(WaitForTaskRequest request, ServerCallContext context)
    {
        string id = Identify(context);
        if (!clients.HasDeclaredExamples(id))
            throw Refuse(context, "protocol", StatusCode.FailedPrecondition,
                $"client '{id}' has not declared how many examples it holds (a client older than fedllm.federation v2.1?); the server bounds each update's count by it");
        var wait = TimeSpan.FromSeconds(Math.Clamp(request.WaitSeconds, 0, 60));
        var offer = await clients.WaitForTaskAsync(id, wait, context.CancellationToken);
        if (offer.Finished) return new WaitForTaskReply { Finished = true };
        if (offer.StopReason is { } stopping) return new WaitForTaskReply { Stopping = new ServerStopping { Reason = stopping } };
        if (!offer.HasTask) return new WaitForTaskReply();
        logger.LogInformation("round {Round}: task handed to client {Client}", RoundRecord.NumberOf(offer.Round), id);
        return new WaitForTaskReply { Task = WireMapping.ToWire(offer.Instructions!) };
    }

    /// <summary>Streams the open round's global adapter to the caller, as chunks encoded once for every
    /// client.</summary>
    public override Task FetchGlobal(FetchRequest request, IServerStreamWriter<TensorChunk> responseStream, ServerCallContext context) =>
        Stream(request, responseStream, context, c => c.EncodedGlobal);

    /// <summary>Streams one of the open round's named tensor sets; NotFound when the round has none of that
    /// name.</summary>
    public override Task FetchTensorSet(FetchRequest request, IServerStreamWriter<TensorChunk> responseStream, ServerCallContext context) =>
        Stream(request, responseStream, context, c => c.EncodedSet(request.TensorSet)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"round {RoundRecord.NumberOf(request.Round)} has no tensor set '{request.TensorSet}'")));

    /// <summary>Streams the round's chunks, encoded once for every client; a chunk wraps the encoded bytes, so a write copies nothing.</summary>
    async Task Stream(FetchRequest request, IServerStreamWriter<TensorChunk> stream, ServerCallContext context, Func<OpenRound, IReadOnlyList<TensorChunk>> pick)
    {
        string id = Identify(context);
        using var lease = clients.Lease(id, request.Round, out string reason)
            ?? throw new RpcException(new Status(StatusCode.FailedPrecondition, reason));
        using var stall = new TransferStall(context.CancellationToken, clients.Options.TransferStallTimeout);
        var alive = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            foreach (var chunk in pick(lease.Context))
            {
                await stream.WriteAsync(chunk, stall.Token);
                Interlocked.Add(ref lease.Context.BytesSent, chunk.CalculateSize());
                KeepAlive(id, alive, stall);
            }
        }
        catch (OperationCanceledException) when (stall.Fired)
        {
            throw Stalled(stall, context.Peer, "fetch");
        }
    }

    /// <summary>Logs a transfer that moved no data for the stall timeout and gives the status that ends its call.</summary>
    RpcException Stalled(TransferStall stall, string? peer, string what) =>
        new(new Status(StatusCode.DeadlineExceeded, LogStall(stall, peer, what)));

    /// <summary>Logs a transfer (an RPC stream or a bulk connection) that moved no data for the stall timeout; returns
    /// the reason.</summary>
    string LogStall(TransferStall stall, string? peer, string what)
    {
        string reason = $"the {what} moved no data for {stall.Timeout.TotalSeconds:F0} s; closed";
        refusals.Refused("stalled", peer, reason);
        return reason;
    }

    /// <summary>Reads an update stream (header first, then chunks), checks it against the round's bounds while reading,
    /// and takes it into the round or refuses it with the reason in the reply.</summary>
    public override async Task<SubmitReply> SubmitUpdate(IAsyncStreamReader<UpdateChunk> requestStream, ServerCallContext context)
    {
        string id = Identify(context);
        // gRPC lifts Kestrel's minimum request data rate from streaming calls, so a stall is bounded here.
        using var stall = new TransferStall(context.CancellationToken, clients.Options.TransferStallTimeout);
        var ct = stall.Token;
        bool any;
        try
        {
            any = await requestStream.MoveNext(ct);
        }
        catch (OperationCanceledException) when (stall.Fired)
        {
            throw Stalled(stall, context.Peer, "update stream");
        }
        if (!any) return Refuse(id, -1, "empty update stream");
        if (requestStream.Current.PartCase != UpdateChunk.PartOneofCase.Header) return Refuse(id, -1, "an update must start with its header");
        var header = requestStream.Current.Header;
        long bytes = requestStream.Current.CalculateSize();
        var (opened, limit, refusal) = OpenSubmission(id, header, bytes);
        if (opened is null) return refusal!;
        using var lease = opened;
        var round = lease.Context;
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var returned = round.Instructions.ReturnedTensorSets;
        var sets = returned.ToDictionary(name => name, _ => new Dictionary<string, Tensor>(StringComparer.Ordinal), StringComparer.Ordinal);
        var weightParts = new TensorAssembler(h => Admit(h, round.Global, weights, "weights"), clients.Received.Rent);
        var setParts = returned.ToDictionary(name => name, name => new TensorAssembler(h => Admit(h, round.Global, sets[name], name.Replace('_', ' ')),
            clients.Received.Rent), StringComparer.Ordinal);
        try
        {
            var alive = System.Diagnostics.Stopwatch.StartNew();
            while (await requestStream.MoveNext(ct))
            {
                var message = requestStream.Current;
                bytes += message.CalculateSize();
                KeepAlive(id, alive, stall);
                if (bytes > limit) throw new TransferException($"update exceeds the size limit of {limit} bytes");
                switch (message.PartCase)
                {
                    case UpdateChunk.PartOneofCase.Weights:
                        if (weightParts.Add(message.Weights) is { } w) weights[w.Name] = w.Tensor.DetachFromDisposeScope();
                        break;
                    case UpdateChunk.PartOneofCase.TensorSet:
                        string setName = message.TensorSet.TensorSet;
                        if (!setParts.TryGetValue(setName, out var parts))
                            throw new TransferException($"tensor set '{setName}' was not asked for in this round");
                        if (parts.Add(message.TensorSet.Chunk) is { } d) sets[setName][d.Name] = d.Tensor.DetachFromDisposeScope();
                        break;
                    default:
                        throw new TransferException("a second header or an empty message inside the update");
                }
            }
            weightParts.Finish();
            foreach (var parts in setParts.Values) parts.Finish();
        }
        catch (Exception e) when (e is TransferException || e is RpcException { StatusCode: StatusCode.ResourceExhausted })
        {
            Interlocked.Add(ref round.BytesReceived, bytes);
            Free(weights, sets);
            return Refuse(id, header.Round, e is RpcException r ? r.Status.Detail : e.Message);
        }
        catch (OperationCanceledException) when (stall.Fired)
        {
            Interlocked.Add(ref round.BytesReceived, bytes);
            Free(weights, sets);
            throw Stalled(stall, context.Peer, "update stream");
        }
        catch
        {
            // The call ended otherwise (the client went away): nothing is taken, and what was read is freed.
            Free(weights, sets);
            throw;
        }
        finally
        {
            weightParts.Dispose();
            foreach (var parts in setParts.Values) parts.Dispose();
        }
        Interlocked.Add(ref round.BytesReceived, bytes);
        return TakeUpdate(id, lease, header, weights, sets, bytes);
    }

    /// <summary>Before an update's tensors are read: whether this client may submit for this round now (the lease), and
    /// the most bytes it may send; or the refusal to answer with.</summary>
    (RoundLease? Lease, long Limit, SubmitReply? Refusal) OpenSubmission(string id, UpdateHeader header, long headerBytes)
    {
        var lease = clients.BeginSubmission(id, header.Round, header.ClientId, out string refusal, out var retryAfter);
        if (lease is null) return (null, 0, new SubmitReply { Accepted = false, Reason = refusal, RetryAfterSeconds = retryAfter.TotalSeconds });
        var round = lease.Context;
        // Secure aggregation: the server must never hold one client's update in the clear, so it is refused unread.
        SubmitReply? refused = null;
        if (FedLlm.Federation.SecureAggregation.SecureAggregationOptions.FromConfig(round.Instructions) is not null)
            refused = Refuse(id, header.Round, $"round {RoundRecord.NumberOf(header.Round)} uses secure aggregation: the update travels only masked, through SecAggExchange, never in the clear");
        long limit = Math.Min(clients.Options.MaxUpdateBytes, LargestUpdateBytes(round));
        if (refused is null && headerBytes > limit) refused = RefuseOversize(id, header.Round, limit, round, headerBytes);
        if (refused is null) return (lease, limit, null);
        lease.Dispose();
        return (null, 0, refused);
    }

    /// <summary>A fully read update: screened against the round's bounds, then taken into the round or refused (and
    /// freed) with the reason.</summary>
    SubmitReply TakeUpdate(string id, RoundLease lease, UpdateHeader header, Dictionary<string, Tensor> weights, Dictionary<string, Dictionary<string, Tensor>> sets, long bytes)
    {
        var round = lease.Context;
        var returned = round.Instructions.ReturnedTensorSets;
        var update = new ClientUpdate(id, weights, header.ExampleCount, header.Metrics.ToDictionary(kv => kv.Key, kv => kv.Value))
        {
            TensorSets = sets.Where(kv => kv.Value.Count > 0).ToDictionary(kv => kv.Key, kv => (IReadOnlyDictionary<string, Tensor>)kv.Value, StringComparer.Ordinal),
        };
        var verdict = UpdateScreen.Check(round.Global, update, returned, clients.LimitsFor(id));
        string problem;
        if (verdict.Accepted)
        {
            // The validator's pass over y − x already gave the norm the round's median bound compares.
            string? late = clients.Accept(lease, update, verdict.UpdateNorm!.Value, bytes);
            if (late is null) return new SubmitReply { Accepted = true };
            problem = late;
        }
        else
        {
            problem = verdict.Reason!;
            clients.Reject(id, header.Round, problem);
        }
        RemoteClients.DisposeUpdate(update);
        return new SubmitReply { Accepted = false, Reason = problem };
    }

    /// <summary>The most wire bytes an honest update of this round can take: each tensor of the global adapter (and of
    /// every returned tensor set) at fp32, with the gzip allowance <see cref="Admit"/> grants and its header, plus room
    /// for the update header's metrics.</summary>
    static long LargestUpdateBytes(OpenRound round)
    {
        long perCopy = round.Global.Sum(kv =>
        {
            long exact = TensorCodec.EncodedLength(TransferEncoding.Default, kv.Value.numel());
            long chunks = exact / TensorChunks.MaxChunkBytes + 1;
            return exact + exact / 8 + 4096 + kv.Key.Length + 128 + chunks * 16;
        });
        return perCopy * (1 + round.Instructions.ReturnedTensorSets.Count) + (64 << 10);
    }

    SubmitReply RefuseOversize(string id, int round, long limit, OpenRound context, long bytes)
    {
        Interlocked.Add(ref context.BytesReceived, bytes);
        return Refuse(id, round, $"update exceeds the size limit of {limit} bytes");
    }

    /// <summary>Refuses a tensor header that cannot belong to the update, before its bytes are buffered.</summary>
    static string? Admit(Protocol.TensorHeader header, IReadOnlyDictionary<string, Tensor> global, IReadOnlyDictionary<string, Tensor> received, string part)
    {
        if (!global.TryGetValue(header.Name, out var like)) return $"{part}: tensor '{header.Name}' is not in the global adapter";
        if (received.ContainsKey(header.Name)) return $"{part}: tensor '{header.Name}' sent twice";
        if (!header.Shape.SequenceEqual(like.shape))
            return $"{part}: tensor '{header.Name}' has shape [{string.Join(", ", header.Shape)}], the global [{string.Join(", ", like.shape)}]";
        if (header.Dtype != TensorChunks.Float32) return $"{part}: tensor '{header.Name}' has dtype {header.Dtype}, the global float32";
        TransferEncoding encoding;
        try
        {
            encoding = TransferEncoding.Parse(header.Encoding);
        }
        catch (FormatException e)
        {
            return $"{part}: tensor '{header.Name}': {e.Message}";
        }
        // The announced size is what the receiver buffers: it must be what the shape needs (gzip: at most the codec's bound).
        long exact = TensorCodec.EncodedLength(encoding with { Gzip = false }, like.numel());
        bool fits = encoding.Gzip ? header.EncodedBytes <= TensorCodec.MaxGzipLength(exact) : header.EncodedBytes == exact;
        return fits ? null : $"{part}: tensor '{header.Name}' announces {header.EncodedBytes} bytes; its shape needs {exact} as {encoding}";
    }

    SubmitReply Refuse(string id, int round, string reason)
    {
        clients.Reject(id, round, reason);
        return new SubmitReply { Accepted = false, Reason = reason };
    }

    /// <summary>Marks the caller alive and tells it the open round (-1 between rounds).</summary>
    public override Task<HeartbeatReply> Heartbeat(HeartbeatRequest request, ServerCallContext context)
    {
        clients.Seen(Identify(context));
        return Task.FromResult(new HeartbeatReply { CurrentRound = clients.OpenRoundNumber ?? -1 });
    }

    /// <summary>The server's view of the run: the open round, its update count, every client's state and the last
    /// metrics. Any roster member may ask.</summary>
    public override Task<StatusReply> Status(StatusRequest request, ServerCallContext context)
    {
        // Any roster member's credentials may ask (operators use one client's kit).
        Identify(context);
        var snapshot = clients.Status();
        var (nextRound, lastMetrics) = progress();
        var reply = new StatusReply
        {
            Stopping = snapshot.StopReason is not null,
            RunId = run.RunId,
            Round = snapshot.OpenRound ?? nextRound,
            TotalRounds = run.Federation.Rounds,
            RoundOpen = snapshot.OpenRound is not null,
            UpdatesThisRound = snapshot.UpdatesThisRound,
            LastMetrics = lastMetrics ?? "",
        };
        reply.Clients.AddRange(snapshot.Clients.Select(c => new ClientStatus
        {
            ClientId = c.Id, Connected = c.Connected, SecondsSinceSeen = c.SecondsSinceSeen, AcceptedUpdates = c.Accepted, RejectedUpdates = c.Rejected,
            State = c.State,
        }));
        return Task.FromResult(reply);
    }
}
