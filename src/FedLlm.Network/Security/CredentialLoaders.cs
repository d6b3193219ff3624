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
    /// <summary>Loads the server kit named by <paramref name="section"/> and builds the TLS options and the client and
    /// admin authenticators for its auth mode.</summary>
    /// <param name="section">server.yaml's server section (kit, auth, roster).</param>
    /// <param name="source">What to name in errors (the config file).</param>
    /// <exception cref="ArgumentException">No kit, or an auth mode other than certificate or token.</exception>
    /// <exception cref="InvalidDataException">The kit cannot be read (the message names the kit folder).</exception>
    public static ServerSecurity Load(ServerConfig.ServerSection section, string source)
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
        return new ServerSecurity(new ServerTls(rejected => kit.CreateSslOptions(requireCertificate, rejected)),
            new KitAuthenticator(kit, tokenMode: !requireCertificate), new KitAdminAuthenticator(kit));
    }
}

/// <summary>
/// Authenticates a call by the kit. Certificate mode: the TLS client certificate proves the id (a call claiming another
/// id is refused), or, without a certificate, the claimed id's token must match its stored hash. Token mode: the token
/// must match whatever else is presented, and a certificate, if one is, must name the same client.
/// </summary>
public sealed class KitAuthenticator(ServerKit kit, bool tokenMode = false) : IClientAuthenticator
{
    /// <inheritdoc/>
    public string Authenticate(CallerCredentials caller)
    {
        var (certificate, claimed, token) = caller;
        try
        {
            if (!tokenMode) return kit.Authenticate(certificate, claimed, token);
            string id = kit.Authenticate(null, claimed, token);
            if (certificate is not null && ClientIdentity.Verify(certificate, kit.Ca) is var proven && proven != id)
                throw new AuthenticationException($"the token is client '{id}''s but the certificate proves '{proven}'");
            return id;
        }
        catch (AuthenticationException e)
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, e.Message));
        }
    }
}

/// <summary>The admin calls: an admin certificate listed in the kit's admin-certificates.json.</summary>
public sealed class KitAdminAuthenticator(ServerKit kit) : IAdminAuthenticator
{
    /// <inheritdoc/>
    public string Authenticate(ServerCallContext context)
    {
        try
        {
            return kit.AuthenticateAdmin(context.GetHttpContext().Connection.ClientCertificate);
        }
        catch (AuthenticationException e)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, e.Message));
        }
    }
}

/// <summary>Turns a client's kit folder into a connection: client certificate, the server pinned to the kit's CA, token.</summary>
public static class ClientCredentialsLoader
{
    /// <param name="source">What to name in errors (the config file).</param>
    /// <param name="auth">certificate (mutual TLS), token (the kit's token, no client certificate), or null: certificate
    /// when the kit has client.crt, else token.</param>
    /// <param name="server">The server's URL (https://HOST:PORT, or http:// with <paramref name="insecure"/>).</param>
    /// <param name="clientId">This client's roster id.</param>
    /// <param name="kitDirectory">The client-{id}/ folder of the provisioning kit; required unless <paramref
    /// name="insecure"/>.</param>
    /// <param name="insecure">Plain-text h2c with the claimed id only, for a server started with --insecure.</param>
    public static ServerConnection Connect(string server, string clientId, string? kitDirectory, bool insecure, string source, string? auth = null)
    {
        if (insecure) return new ServerConnection(server, clientId, Insecure: true);
        if (kitDirectory is null)
            throw new ArgumentException($"{source}: kit is required for TLS (the client-ID/ folder written by `fedllm certs`); or pass --insecure to a server started with --insecure");
        bool hasCertificate = File.Exists(Path.Combine(kitDirectory, ProvisioningKit.ClientCertificateFileName));
        bool token = (auth?.Trim().ToLowerInvariant()) switch
        {
            null or "" => !hasCertificate,
            "certificate" => false,
            "token" => true,
            _ => throw new ArgumentException($"{source}: auth '{auth}' must be certificate (mutual TLS) or token"),
        };
        if (token) return TokenKit(server, clientId, kitDirectory, source);
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
        var diagnostics = new TlsDiagnostics();
        return new ServerConnection(server, clientId, Insecure: false, kit.Token, () =>
        {
            var handler = kit.CreateHttpHandler(diagnostics.ServerRejected);
            handler.InitialHttp2StreamWindowSize = ServerConnection.StreamWindowBytes;
            return handler;
        }, diagnostics)
        {
            BulkTls = () => kit.CreateSslOptions(diagnostics.ServerRejected),
        };
    }

    /// <summary>A kit used with its token only: ca.crt pins the server, the token proves the client; client.crt, if
    /// there, is not offered.</summary>
    static ServerConnection TokenKit(string server, string clientId, string kitDirectory, string source)
    {
        string tokenPath = Path.Combine(kitDirectory, ProvisioningKit.TokenFileName);
        string caPath = Path.Combine(kitDirectory, CertificateAuthority.CertificateFileName);
        if (!File.Exists(tokenPath)) throw new FileNotFoundException($"{source}: token authentication needs {tokenPath} (the client's token from `fedllm certs`)", tokenPath);
        string token = File.ReadAllText(tokenPath).Trim();
        if (token.Length == 0) throw new InvalidDataException($"{source}: {tokenPath} is empty");
        System.Security.Cryptography.X509Certificates.X509Certificate2 ca;
        try
        {
            ca = PemFiles.ReadCertificate(caPath);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or System.Security.Cryptography.CryptographicException)
        {
            throw new InvalidDataException($"{source}: kit {kitDirectory}: {e.Message}", e);
        }
        return WithToken(server, clientId, token, ca);
    }

    /// <summary>A token-only connection: the server pinned to <paramref name="ca"/>, no client certificate.</summary>
    public static ServerConnection WithToken(string server, string clientId, string token, System.Security.Cryptography.X509Certificates.X509Certificate2 ca)
    {
        var diagnostics = new TlsDiagnostics();
        return new(server, clientId, Insecure: false, token, () => new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = ServerCertificateValidation.PinnedToCa(ca, diagnostics.ServerRejected) },
            EnableMultipleHttp2Connections = true,
            InitialHttp2StreamWindowSize = ServerConnection.StreamWindowBytes,
        }, diagnostics)
        {
            BulkTls = () => new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = ServerCertificateValidation.PinnedToCa(ca, diagnostics.ServerRejected) },
        };
    }

    /// <summary>An operator's connection for <c>fedllm admin</c>: the admin certificate of an admin-NAME/ folder.</summary>
    public static ServerConnection Admin(string server, string kitDirectory)
    {
        var certificate = PemFiles.ReadCertificateWithKey(Path.Combine(kitDirectory, ProvisioningKit.AdminCertificateFileName),
            Path.Combine(kitDirectory, ProvisioningKit.AdminKeyFileName));
        var ca = PemFiles.ReadCertificate(Path.Combine(kitDirectory, CertificateAuthority.CertificateFileName));
        string name = AdminCertificates.NameOf(certificate)
            ?? throw new InvalidDataException($"{kitDirectory}: {ProvisioningKit.AdminCertificateFileName} is not an admin certificate");
        var diagnostics = new TlsDiagnostics();
        return new ServerConnection(server, "admin:" + name, Insecure: false, null, () => new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificateContext = SslStreamCertificateContext.Create(certificate, additionalCertificates: null, offline: true),
                RemoteCertificateValidationCallback = ServerCertificateValidation.PinnedToCa(ca, diagnostics.ServerRejected),
            },
        }, diagnostics);
    }
}
