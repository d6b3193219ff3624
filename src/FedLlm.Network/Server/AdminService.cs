using FedLlm.Network.Protocol;
using Grpc.Core;

namespace FedLlm.Network.Server;

/// <summary>The operator's controls over gRPC (<c>fedllm admin</c>); every call is authorised by an admin certificate and logged.</summary>
public sealed class AdminService(RemoteClients clients, StopRequests stop, IAdminAuthenticator authenticator, RefusalLog refusals,
    Microsoft.Extensions.Logging.ILogger<AdminService> logger) : Protocol.Admin.AdminBase
{
    string Authorise(ServerCallContext context, string action)
    {
        try
        {
            string admin = authenticator.Authenticate(context);
            Microsoft.Extensions.Logging.LoggerExtensions.LogWarning(logger, "admin {Admin} from {Peer}: {Action}", admin, RefusalLog.HostOf(context.Peer), action);
            return admin;
        }
        catch (RpcException e)
        {
            refusals.Refused("admin", context.Peer, e.Status.Detail);
            throw;
        }
    }

    /// <summary>Asks the server to stop: the open round finishes within the stop grace (or is abandoned on request),
    /// the state is committed and the server exits.</summary>
    public override Task<AdminReply> Stop(StopRequest request, ServerCallContext context)
    {
        string admin = Authorise(context, request.AbandonRound ? "stop, abandoning the open round" : "stop");
        stop.Request($"stopped by admin {admin}", request.AbandonRound);
        return Task.FromResult(new AdminReply
        {
            Message = request.AbandonRound ? "stopping: the open round is abandoned; the server exits once its state is committed"
                : $"stopping: the open round has {clients.Options.StopGrace.TotalSeconds:F0} s to finish; the server exits once its state is committed",
        });
    }

    /// <summary>Drops the open round's updates and hands its task out again.</summary>
    public override Task<AdminReply> AbortRound(AbortRoundRequest request, ServerCallContext context)
    {
        Authorise(context, "abort the open round");
        return Task.FromResult(new AdminReply { Message = clients.AbortRound() });
    }

    /// <summary>Shuts a client out of the run: its calls are refused from now on and it is left out of every
    /// round.</summary>
    public override Task<AdminReply> RemoveClient(RemoveClientRequest request, ServerCallContext context)
    {
        Authorise(context, $"remove client '{request.ClientId}'");
        return Task.FromResult(new AdminReply { Message = clients.RemoveClient(request.ClientId) });
    }
}
