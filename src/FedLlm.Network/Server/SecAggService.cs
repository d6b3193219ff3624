using FedLlm.Federation;
using FedLlm.Federation.SecureAggregation;
using FedLlm.Network.Protocol;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using SecAggPhase = FedLlm.Federation.SecureAggregation.SecAggPhase;

namespace FedLlm.Network.Server;

/// <summary>
/// The gRPC face of secure aggregation: authenticates the caller as <see cref="FederationService"/> does, hands its
/// phase message to the open <see cref="SecAggRound"/> and waits a few seconds for the phase's reply. The
/// advertise-keys message is the client's answer to the round's task: it is taken into the round through
/// <see cref="RemoteClients.BeginSubmission"/> and <see cref="RemoteClients.Accept"/> as an update without tensors, so
/// deadlines, heartbeats, refusals and the operator's controls work as for plain rounds.
/// </summary>
public sealed class SecAggService(RemoteClients clients, SecAggSessions sessions, IClientAuthenticator authenticator, RefusalLog refusals,
    ILogger<SecAggService> logger) : SecAggFederation.SecAggFederationBase
{
    /// <summary>How long one call waits for its phase to close before answering "pending".</summary>
    public static readonly TimeSpan ReplyWait = TimeSpan.FromSeconds(10);

    const int MaxMetrics = 64;

    /// <summary>Takes the caller's message of one phase (or a repeated ask) and answers with the server's message for the
    /// next phase, or "pending". Refusals are FailedPrecondition with the reason.</summary>
    public override async Task<SecAggReply> SecAggExchange(SecAggRequest request, ServerCallContext context)
    {
        string id = Identify(context);
        clients.Seen(id);
        var round = sessions.Find(request.Round)
            ?? throw Refuse(context, id, request.Round, $"round {RoundRecord.NumberOf(request.Round)} runs no secure-aggregation exchange now (late, or the round failed)");
        if (request.Parts > 1 || request.Part != 0)
        {
            // A long message (a large masked input) in parts: each but the last is only stored.
            var whole = round.Assemble(id, request, out string? refusal);
            if (refusal is not null) throw Refuse(context, id, request.Round, refusal);
            // Counted once whole, by Deliver (the parts' own framing, a few bytes each, is left out).
            if (whole is null) return SecAggWireMapping.Pending();
            request = whole;
        }
        SecAggClientMessage message;
        try
        {
            message = SecAggWireMapping.FromWire(request);
        }
        catch (SecureAggregationException e)
        {
            throw Refuse(context, id, request.Round, e.Message);
        }
        if (message.Message is not null)
        {
            string? refusal = message.Phase == SecAggPhase.AdvertiseKeys
                ? await AnswerTaskAsync(id, round, message, request, context.CancellationToken)
                : round.Deliver(id, message, request.Payload.Length, request.CalculateSize());
            if (refusal is not null) throw Refuse(context, id, message.Round, refusal);
        }
        else if (request.ExampleCount != 0 || request.Metrics.Count > 0)
            throw Refuse(context, id, message.Round, "a repeated ask carries no example count or metrics");
        try
        {
            var (ready, next) = await round.AwaitReplyAsync(id, message.Phase, ReplyWait, context.CancellationToken);
            if (!ready) return SecAggWireMapping.Pending();
            var reply = SecAggWireMapping.Reply(message.Phase, next);
            round.Sent(reply.CalculateSize(), reply.Payload.Length);
            return reply;
        }
        catch (SecureAggregationException e)
        {
            throw Refuse(context, id, message.Round, e.Message);
        }
    }

    /// <summary>The keys answer the round's task: checked like an update's header, stored, then taken into the round.</summary>
    async Task<string?> AnswerTaskAsync(string id, SecAggRound round, SecAggClientMessage message, SecAggRequest request, CancellationToken cancellationToken)
    {
        long limit = clients.LimitsFor(id).MaxExampleCount;
        if (message.ExampleCount < 1 || message.ExampleCount > limit)
            return Reject(id, round, $"{id}: example count {message.ExampleCount} is not in [1, {limit}]");
        if (message.Metrics.Count > MaxMetrics || message.Metrics.Values.Any(v => !double.IsFinite(v)))
            return Reject(id, round, $"{id}: metrics must be at most {MaxMetrics} finite values");
        RoundLease? lease;
        while (true)
        {
            lease = clients.BeginSubmission(id, round.Round, id, out string reason, out var retryAfter);
            if (lease is not null) break;
            if (retryAfter <= TimeSpan.Zero) return reason;
            // Busy with other uploads: a key advertisement needs no upload memory, and the budget frees as they finish.
            await Task.Delay(retryAfter, cancellationToken);
        }
        using (lease)
        {
            if (round.Deliver(id, message, request.Payload.Length, request.CalculateSize()) is { } refused)
                return Reject(id, round, refused);
            var answer = new ClientUpdate(id, new Dictionary<string, TorchSharp.torch.Tensor>(), message.ExampleCount, message.Metrics.ToDictionary());
            if (clients.Accept(lease, answer, 0) is { } late)
            {
                round.Withdraw(id);
                return late;
            }
            logger.LogInformation("round {Round}: client {Client} advertised its secure-aggregation keys", RoundRecord.NumberOf(round.Round), id);
            return null;
        }
    }

    string Reject(string id, SecAggRound round, string reason)
    {
        clients.Reject(id, round.Round, reason);
        return reason;
    }

    string Identify(ServerCallContext context)
    {
        string id;
        try
        {
            id = authenticator.Authenticate(CallerCredentials.Of(context));
        }
        catch (RpcException e)
        {
            refusals.Refused(e.StatusCode == StatusCode.PermissionDenied ? "roster" : "auth", context.Peer, e.Status.Detail);
            throw;
        }
        if (clients.RosterIndex(id) is null)
        {
            refusals.Refused("roster", context.Peer, $"client '{id}' is not on this run's roster");
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"client '{id}' is not on this run's roster; ask the operator to add it to server.roster"));
        }
        if (clients.IsRemoved(id))
        {
            refusals.Refused("removed", context.Peer, $"client '{id}' was removed");
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"client '{id}' was removed from this run by the operator"));
        }
        return id;
    }

    RpcException Refuse(ServerCallContext context, string id, int round, string reason)
    {
        logger.LogWarning("round {Round}: secure aggregation refused client {Client}: {Reason}", RoundRecord.NumberOf(round), id, reason);
        refusals.Refused("secagg", context.Peer, reason);
        return new RpcException(new Status(StatusCode.FailedPrecondition, reason));
    }
}
