using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace FedLlm.Security;

/// <summary>The server's credentials, loaded from its kit folder (server/ from <see cref="ProvisioningKit"/>), and the
/// one place that decides which client a connection speaks for.</summary>
public sealed class ServerKit : IDisposable
{
    private ServerKit(X509Certificate2 certificate, X509Certificate2 ca, ClientTokens tokens, ClientCertificatePins? pins, IReadOnlySet<string>? allowedClients,
        AdminCertificates? admins)
    {
        Admins = admins;
        Certificate = certificate;
        Ca = ca;
        Tokens = tokens;
        Pins = pins;
        AllowedClients = allowedClients;
        // Built once: it holds the server's chain and the CA list sent in each handshake's certificate request.
        certificateContext = new Lazy<SslStreamCertificateContext>(() => SslStreamCertificateContext.Create(Certificate, additionalCertificates: null,
            offline: true, trust: SslCertificateTrust.CreateForX509Collection(new X509Certificate2Collection(Ca), sendTrustInHandshake: !OperatingSystem.IsWindows())));
    }

    private readonly Lazy<SslStreamCertificateContext> certificateContext;

    /// <summary>server.crt with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>The CA whose client certificates are accepted.</summary>
    public X509Certificate2 Ca { get; }

    /// <summary>Hashes of the client tokens (client-tokens.json; empty when the file is absent).</summary>
    public ClientTokens Tokens { get; }

    /// <summary>Each client's current certificate (client-certificates.json), or null when the file is absent: then any
    /// unexpired certificate our CA issued for a client is accepted.</summary>
    public ClientCertificatePins? Pins { get; }

    /// <summary>The operator certificates accepted for the admin calls (admin-certificates.json), or null when there are none.</summary>
    public AdminCertificates? Admins { get; }

    /// <summary>The only ids admitted (server.yaml's clients), or null to admit every client the CA or a token vouches for.</summary>
    public IReadOnlySet<string>? AllowedClients { get; }

    /// <summary>Loads server.crt, server.key, ca.crt, and (when present) client-tokens.json and client-certificates.json
    /// from <paramref name="directory"/>.</summary>
    /// <param name="allowedClients">The server's client list; null admits every client the kit vouches for.</param>
    /// <param name="directory">The server/ folder of a kit.</param>
    public static ServerKit Load(string directory, IEnumerable<string>? allowedClients = null)
    {
        var allowed = allowedClients?.Select(id => ClientIds.Validate(id, nameof(allowedClients))).ToHashSet(StringComparer.Ordinal);
        var certificate = PemFiles.ReadCertificateWithKey(
            Path.Combine(directory, ProvisioningKit.ServerCertificateFileName), Path.Combine(directory, ProvisioningKit.ServerKeyFileName));
        X509Certificate2? ca = null;
        try
        {
            ca = PemFiles.ReadCertificate(Path.Combine(directory, CertificateAuthority.CertificateFileName));
            string tokensPath = Path.Combine(directory, ClientTokens.FileName);
            var tokens = File.Exists(tokensPath) ? ClientTokens.Load(tokensPath) : new ClientTokens();
            string pinsPath = Path.Combine(directory, ClientCertificatePins.FileName);
            var pins = File.Exists(pinsPath) ? ClientCertificatePins.Load(pinsPath) : null;
            string adminsPath = Path.Combine(directory, AdminCertificates.FileName);
            var admins = File.Exists(adminsPath) ? AdminCertificates.Load(adminsPath) : null;
            return new ServerKit(certificate, ca, tokens, pins, allowed, admins);
        }
        catch
        {
            certificate.Dispose();
            ca?.Dispose();
            throw;
        }
    }

    /// <summary>TLS options for the server's listener (Kestrel: <c>ListenOptions.UseHttps(new TlsHandshakeCallbackOptions
    /// { OnConnection = _ => ValueTask.FromResult(kit.CreateSslOptions(...)) })</c>).</summary>
    /// <param name="requireClientCertificate">True: mutual TLS only. False: a client certificate is asked for but optional,
    /// so token-only clients can connect; <see cref="Authenticate"/> then demands a token.</param>
    /// <remarks>A certificate that is presented must be issued by our CA for a client or an admin
    /// (<see cref="ClientIdentity.Verify(X509Certificate2, X509Certificate2)"/>) or the handshake fails; the CA's name is
    /// sent in the request so clients know which certificate to offer. Whether that client is on the server's list and
    /// its certificate the current one is checked per call (<see cref="Authenticate"/>), where the refusal can reach the
    /// client as a reason it can show; a handshake failure reaches it only as a broken connection.</remarks>
    /// <param name="clientRejected">Told why a presented client certificate was refused in the handshake, for the
    /// refusal log.</param>
    public SslServerAuthenticationOptions CreateSslOptions(bool requireClientCertificate, Action<string>? clientRejected = null) => new()
    {
        ServerCertificateContext = certificateContext.Value,
        ClientCertificateRequired = true, // ask for one always; whether its absence is fatal is decided below
        RemoteCertificateValidationCallback = (_, certificate, _, _) =>
        {
            if (certificate is null)
            {
                if (requireClientCertificate) clientRejected?.Invoke("a client connected without a certificate; this server requires mutual TLS");
                return !requireClientCertificate;
            }
            using var presented = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
            if (AdminCertificates.NameOf(presented) is not null)
            {
                try
                {
                    (Admins ?? new AdminCertificates()).Verify(presented, Ca);
                    return true;
                }
                catch (AuthenticationException e)
                {
                    clientRejected?.Invoke(e.Message);
                    return false;
                }
            }
            try
            {
                ClientIdentity.Verify(presented, Ca);
                return true;
            }
            catch (AuthenticationException e)
            {
                clientRejected?.Invoke(e.Message);
                return false;
            }
        },
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        // gRPC needs HTTP/2 chosen by ALPN; a handshake callback's options are used as returned.
        ApplicationProtocols = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
    };

    /// <summary>Whether a presented client certificate proves an admitted client (for a TLS library's client-certificate
    /// callback, e.g. Kestrel's <c>ClientCertificateValidation</c>): issued by our CA for clientAuth, valid now, the
    /// client's current certificate (when pinned), and on the server's list when it has one.</summary>
    public bool TryVerifyClient(X509Certificate2 presented, out string? clientId, out string? reason)
    {
        try
        {
            clientId = Authenticate(presented, null, null);
            reason = null;
            return true;
        }
        catch (AuthenticationException e)
        {
            clientId = null;
            reason = e.Message;
            return false;
        }
    }

    /// <summary>The client a request speaks for; see <see cref="ClientAuthenticator.Authenticate"/>.</summary>
    /// <summary>The admin a certificate proves; see <see cref="AdminCertificates.Verify"/>.</summary>
    /// <exception cref="AuthenticationException">Not a current admin certificate of this server.</exception>
    public string AuthenticateAdmin(X509Certificate2? presented)
    {
        if (presented is null) throw new AuthenticationException("the admin calls need an admin certificate (`fedllm certs --admin NAME`)");
        if (Admins is null) throw new AuthenticationException($"this server has no {AdminCertificates.FileName}; issue an admin certificate with `fedllm certs --admin NAME` and copy the file to the server");
        return Admins.Verify(presented, Ca);
    }

    /// <summary>The id of the calling client, proven by its certificate or token and checked against the server's list
    /// and the pinned certificates.</summary>
    /// <exception cref="System.Security.Authentication.AuthenticationException">No identity is proven, they contradict,
    /// or the client is not admitted; the message says which.</exception>
    public string Authenticate(X509Certificate2? presented, string? claimedClientId, string? token) =>
        ClientAuthenticator.Authenticate(presented, claimedClientId, token, Ca, Tokens, AllowedClients, Pins);

    /// <summary>Frees the server certificate (with its key) and the CA certificate.</summary>
    public void Dispose()
    {
        Certificate.Dispose();
        Ca.Dispose();
    }
}
