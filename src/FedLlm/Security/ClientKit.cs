using System.Net.Http;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace FedLlm.Security;

/// <summary>A client's credentials, loaded from its kit folder (client-{id}/ from <see cref="ProvisioningKit"/>).</summary>
public sealed class ClientKit : IDisposable
{
    private ClientKit(string clientId, X509Certificate2 certificate, X509Certificate2 ca, string? token)
    {
        ClientId = clientId;
        Certificate = certificate;
        Ca = ca;
        Token = token;
    }

    /// <summary>The id the certificate proves (and the token belongs to).</summary>
    public string ClientId { get; }

    /// <summary>client.crt with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>The federation's CA (ca.crt), which pins the server.</summary>
    public X509Certificate2 Ca { get; }

    /// <summary>The client's token, or null when the kit has no token file.</summary>
    public string? Token { get; }

    /// <summary>Loads client.crt, client.key, ca.crt and (if present) token from <paramref name="directory"/>, and checks
    /// that the certificate is valid now and was issued by that CA, so a mixed-up or expired kit fails at start-up.</summary>
    /// <exception cref="InvalidDataException">A file is missing or unreadable, or the certificate does not verify; the message names the file.</exception>
    public static ClientKit Load(string directory)
    {
        string crt = Path.Combine(directory, ProvisioningKit.ClientCertificateFileName);
        var certificate = PemFiles.ReadCertificateWithKey(crt, Path.Combine(directory, ProvisioningKit.ClientKeyFileName));
        X509Certificate2? ca = null;
        try
        {
            ca = PemFiles.ReadCertificate(Path.Combine(directory, CertificateAuthority.CertificateFileName));
            string clientId;
            try { clientId = ClientIdentity.Verify(certificate, ca); }
            catch (AuthenticationException e) { throw new InvalidDataException($"{crt}: {e.Message}", e); }
            string tokenPath = Path.Combine(directory, ProvisioningKit.TokenFileName);
            string? token = File.Exists(tokenPath) ? File.ReadAllText(tokenPath).Trim() : null;
            return new ClientKit(clientId, certificate, ca, string.IsNullOrEmpty(token) ? null : token);
        }
        catch
        {
            certificate.Dispose();
            ca?.Dispose();
            throw;
        }
    }

    /// <summary>TLS options for dialling the server: this client's certificate, the server pinned to the kit's CA.</summary>
    /// <param name="serverRejected">Called with the reason when the server's certificate is refused.</param>
    /// <param name="presentCertificate">False for token authentication: the server is still pinned, but no client
    /// certificate is offered.</param>
    public SslClientAuthenticationOptions CreateSslOptions(Action<string>? serverRejected = null, bool presentCertificate = true) => new()
    {
        // A certificate context is sent whatever CA names the server lists in its request; a plain ClientCertificates
        // collection is filtered by those names and may silently send nothing.
        ClientCertificateContext = presentCertificate ? SslStreamCertificateContext.Create(Certificate, additionalCertificates: null, offline: true) : null,
        RemoteCertificateValidationCallback = ServerCertificateValidation.PinnedToCa(Ca, serverRejected),
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
    };

    /// <summary>An HTTP handler for the gRPC channel (<c>GrpcChannel.ForAddress(url, new() { HttpHandler = ... })</c>):
    /// mutual TLS with this kit's certificate, the server validated by <see cref="ServerCertificateValidation.PinnedToCa"/>.</summary>
    public SocketsHttpHandler CreateHttpHandler(Action<string>? serverRejected = null, bool presentCertificate = true) => new()
    {
        SslOptions = CreateSslOptions(serverRejected, presentCertificate),
        // gRPC streams many calls over one HTTP/2 connection; allow more when the server's stream limit is reached.
        EnableMultipleHttp2Connections = true,
    };

    /// <summary>The handler for a kit in <paramref name="directory"/>; the kit's certificates live as long as the handler needs them.</summary>
    public static SocketsHttpHandler CreateHttpHandler(string directory, Action<string>? serverRejected = null, bool presentCertificate = true) =>
        Load(directory).CreateHttpHandler(serverRejected, presentCertificate);

    /// <summary>Frees the client certificate (with its key) and the CA certificate.</summary>
    public void Dispose()
    {
        Certificate.Dispose();
        Ca.Dispose();
    }
}
