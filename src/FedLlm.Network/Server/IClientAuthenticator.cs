using Grpc.Core;

namespace FedLlm.Network.Server;

/// <summary>Finds out which client is calling. Every RPC goes through it, so no message field can name another client.</summary>
public interface IClientAuthenticator
{
    /// <summary>The caller's client id.</summary>
    /// <exception cref="RpcException">Unauthenticated, with the reason.</exception>
    string Authenticate(ServerCallContext context);
}

/// <summary>
/// <c>--insecure</c> only: believes the client id the caller states in metadata. Anyone who can reach the port can
/// act as any client, which is why the server warns loudly when it runs this way.
/// </summary>
public sealed class InsecureClaimedIdentity : IClientAuthenticator
{
    public string Authenticate(ServerCallContext context) =>
        context.RequestHeaders.GetValue(ProtocolInfo.ClientIdHeader) is { Length: > 0 } id
            ? id
            : throw new RpcException(new Status(StatusCode.Unauthenticated, $"no '{ProtocolInfo.ClientIdHeader}' metadata"));
}
