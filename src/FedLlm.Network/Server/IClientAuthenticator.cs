using Grpc.Core;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Http;

namespace FedLlm.Network.Server;

/// <summary>What a caller presents: the TLS client certificate of its connection, the id it claims and its token.</summary>
public sealed record CallerCredentials(X509Certificate2? Certificate, string? ClaimedId, string? Token)
{
    /// <summary>The credentials of a gRPC call: its connection's certificate and its metadata.</summary>
    public static CallerCredentials Of(ServerCallContext context) => new(context.GetHttpContext().Connection.ClientCertificate,
        context.RequestHeaders.GetValue(ProtocolInfo.ClientIdHeader), context.RequestHeaders.GetValue(ProtocolInfo.TokenHeader));
}

/// <summary>Finds out which client is calling. Every RPC and every bulk transfer goes through it, so no message field can
/// name another client.</summary>
public interface IClientAuthenticator
{
    /// <summary>The caller's client id.</summary>
    /// <exception cref="RpcException">Unauthenticated, with the reason.</exception>
    string Authenticate(CallerCredentials caller);
}

/// <summary>
/// <c>--insecure</c> only: believes the client id the caller states in metadata. Anyone who can reach the port can
/// act as any client, which is why the server warns loudly when it runs this way.
/// </summary>
public sealed class InsecureClaimedIdentity : IClientAuthenticator
{
    /// <inheritdoc/>
    public string Authenticate(CallerCredentials caller) =>
        caller.ClaimedId is { Length: > 0 } id
            ? id
            : throw new RpcException(new Status(StatusCode.Unauthenticated, $"no '{ProtocolInfo.ClientIdHeader}' metadata"));
}

/// <summary>Finds out which operator is calling the admin service.</summary>
public interface IAdminAuthenticator
{
    /// <summary>The admin's name.</summary>
    /// <exception cref="RpcException">PermissionDenied, with the reason.</exception>
    string Authenticate(ServerCallContext context);
}

/// <summary>
/// <c>--insecure</c> only: the admin calls are taken from the server's own machine (a loopback peer) and from nowhere
/// else, as there are no certificates to tell an operator from anyone who reaches the port.
/// </summary>
public sealed class LoopbackAdmin : IAdminAuthenticator
{
    /// <inheritdoc/>
    public string Authenticate(ServerCallContext context)
    {
        var remote = context.GetHttpContext().Connection.RemoteIpAddress;
        if (remote is not null && System.Net.IPAddress.IsLoopback(remote)) return "local operator";
        throw new RpcException(new Status(StatusCode.PermissionDenied,
            "an insecure server takes admin calls from its own machine only; use TLS and an admin certificate (`fedllm certs --admin NAME`)"));
    }
}
