using System.Net.Security;
using System.Security.Authentication;
using FedLlm.Network.Client;
using FedLlm.Network.Server;
using FedLlm.Security;
using Grpc.AspNetCore.Server;
using Grpc.Core;
using Microsoft.AspNetCore.Http;

namespace FedLlm.Network.Security;

/// <summary>Turns server.yaml's <c>kit</c> and <c>auth</c> into TLS options and the authenticator every RPC goes through.</summary>
public static class ServerSecurityLoader
{
    public static ServerSecurity Load(ServerConfig.ServerSection section, string source, Action<string>? clientRejected = null)
    {
        if (section.Kit is null)
            throw new ArgumentException($"{source}: server.kit is required for TLS (the server/ folder written by `fedllm certs`); or pass --insecure on a trusted network");
        bool requireCertificate = section.Auth.Trim().ToLowerInvariant() switch
        {
            "certificate" => true,
            "token" => false,
            _ => throw new ArgumentException($"{source}: server.auth '{section.Auth}' must be certificate (mutual TLS) or token"),
        };
        ServerKit kit;
        try
        {
            kit = ServerKit.Load(section.Kit, section.Roster);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or System.Security.Cryptography.CryptographicException)
        {
            throw new InvalidDataException($"{source}: server.kit {section.Kit}: {e.Message}", e);
        }
        return new ServerSecurity(new ServerTls(kit.CreateSslOptions(requireCertificate, clientRejected)), new KitAuthenticator(kit));
    }
}

/// <summary>
/// Authenticates a call by the kit: the TLS client certificate proves the id (a call claiming another id is refused),
/// or, without a certificate, the claimed id's token must match its stored hash.
/// </summary>
public sealed class KitAuthenticator(ServerKit kit) : IClientAuthenticator
{
    public string Authenticate(ServerCallContext context)
    {
        var http = context.GetHttpContext();
        try
        {
            return kit.Authenticate(http.Connection.ClientCertificate, context.RequestHeaders.GetValue(ProtocolInfo.ClientIdHeader),
                context.RequestHeaders.GetValue(ProtocolInfo.TokenHeader));
        }
        catch (AuthenticationException e)
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, e.Message));
        }
    }
}

/// <summary>Turns a client's kit folder into a connection: client certificate, the server pinned to the kit's CA, token.</summary>
public static class ClientCredentialsLoader
{
    /// <param name="source">What to name in errors (the config file).</param>
    public static ServerConnection Connect(string server, string clientId, string? kitDirectory, bool insecure, string source)
    {
        if (insecure) return new ServerConnection(server, clientId, Insecure: true);
        if (kitDirectory is null)
            throw new ArgumentException($"{source}: kit is required for TLS (the client-ID/ folder written by `fedllm certs`); or pass --insecure to a server started with --insecure");
        ClientKit kit;
        try
        {
            kit = ClientKit.Load(kitDirectory);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or System.Security.Cryptography.CryptographicException)
        {
            throw new InvalidDataException($"{source}: kit {kitDirectory}: {e.Message}", e);
        }
        if (kit.ClientId != clientId)
            throw new ArgumentException($"{source}: the kit in {kitDirectory} is client '{kit.ClientId}''s, but client_id is '{clientId}'");
        return new ServerConnection(server, clientId, Insecure: false, kit.Token, () =>
        {
            var handler = kit.CreateHttpHandler();
            handler.InitialHttp2StreamWindowSize = ServerConnection.StreamWindowBytes;
            return handler;
        });
    }

    /// <summary>A token-only connection: the server pinned to <paramref name="ca"/>, no client certificate.</summary>
    public static ServerConnection WithToken(string server, string clientId, string token, System.Security.Cryptography.X509Certificates.X509Certificate2 ca) =>
        new(server, clientId, Insecure: false, token, () => new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = ServerCertificateValidation.PinnedToCa(ca) },
            EnableMultipleHttp2Connections = true,
            InitialHttp2StreamWindowSize = ServerConnection.StreamWindowBytes,
        });
}
