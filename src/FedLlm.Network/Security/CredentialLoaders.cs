using FedLlm.Network.Client;
using FedLlm.Network.Server;

namespace FedLlm.Network.Security;

/// <summary>Turns the server section's kit and auth settings into TLS and an authenticator.</summary>
public static class ServerSecurityLoader
{
    public static ServerSecurity Load(ServerConfig.ServerSection section, string source) =>
        throw new NotSupportedException($"{source}: TLS needs the identity module (fedllm certs), which this build lacks; run with --insecure on a trusted network");
}

/// <summary>Turns a client's kit folder into a connection (client certificate, pinned CA, token).</summary>
public static class ClientCredentialsLoader
{
    public static ServerConnection Connect(string server, string clientId, string? kit, bool insecure, string source)
    {
        if (insecure) return new ServerConnection(server, clientId, Insecure: true);
        throw new NotSupportedException($"{source}: TLS needs the identity module (fedllm certs), which this build lacks; run with --insecure on a trusted network");
    }
}
