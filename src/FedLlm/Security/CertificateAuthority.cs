using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace FedLlm.Security;

/// <summary>
/// The federation's own certificate authority: it signs the server's certificate and one certificate per client, and
/// the server then accepts exactly the clients it signed (mutual TLS). ECDSA P-256 throughout: small keys, fast
/// handshakes, supported by every TLS stack .NET runs on.
/// </summary>
/// <remarks>
/// The CA's private key is the root of trust: it stays with the operator (ca/ca.key in the kit) and never goes to the
/// server or a client. Certificates carry a random 128-bit serial and subject/authority key identifiers, so chains build
/// unambiguously even when two kits' CAs share a name. No revocation lists: to drop a client, remove its token and
/// re-provision (see README, "Identity: certificates and tokens").
/// </remarks>
public sealed class CertificateAuthority : IDisposable
{
    /// <summary>The CA certificate's file name (PEM), which every participant receives.</summary>
    public const string CertificateFileName = "ca.crt";

    /// <summary>The CA private key's file name (PEM, owner-only); it stays with the operator.</summary>
    public const string KeyFileName = "ca.key";

    /// <summary>Extended key usage OIDs (RFC 5280 §4.2.1.12).</summary>
    public const string ServerAuthOid = "1.3.6.1.5.5.7.3.1", ClientAuthOid = "1.3.6.1.5.5.7.3.2";

    /// <summary>URI form of a client's identity in its certificate's subjectAltName.</summary>
    public const string ClientUriPrefix = "fedllm://client/";

    /// <summary>How long the CA certificate is valid (about 10 years).</summary>
    public static readonly TimeSpan CaValidity = TimeSpan.FromDays(3653); // ~10 years

    /// <summary>How long server, client and admin certificates are valid (825 days, the longest browsers accept for
    /// servers).</summary>
    public static readonly TimeSpan LeafValidity = TimeSpan.FromDays(825); // the longest browsers accept for server certificates

    // Certificates start a little in the past so a participant whose clock lags the operator's still accepts them.
    private static readonly TimeSpan ClockSkew = TimeSpan.FromMinutes(5);

    private CertificateAuthority(X509Certificate2 certificate) => Certificate = certificate;

    /// <summary>The CA certificate, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>A new self-signed CA, valid for ~10 years from now.</summary>
    /// <param name="name">Common name; a date and a random suffix are appended so CAs of different kits are told apart in logs.</param>
    public static CertificateAuthority Create(string name = "FedLlm CA") =>
        Create(name, DateTimeOffset.UtcNow - ClockSkew, DateTimeOffset.UtcNow + CaValidity);

    /// <summary>With explicit validity, so tests can issue certificates that lie in the past.</summary>
    internal static CertificateAuthority Create(string name, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        string suffix = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        var request = new CertificateRequest(new X500DistinguishedName($"CN={name} {DateTime.UtcNow:yyyy-MM-dd} {suffix}"), key, HashAlgorithmName.SHA256);
        // pathLength 0: this CA signs leaves only, never another CA.
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        return new CertificateAuthority(request.CreateSelfSigned(notBefore, notAfter));
    }

    /// <summary>Loads ca.crt and ca.key from <paramref name="directory"/> (a kit's ca/ folder).</summary>
    public static CertificateAuthority Load(string directory)
    {
        var certificate = PemFiles.ReadCertificateWithKey(Path.Combine(directory, CertificateFileName), Path.Combine(directory, KeyFileName));
        var constraints = certificate.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault();
        if (constraints is not { CertificateAuthority: true })
        {
            certificate.Dispose();
            throw new InvalidDataException($"{Path.Combine(directory, CertificateFileName)} ('{certificate.Subject}') is not a CA certificate");
        }
        return new CertificateAuthority(certificate);
    }

    /// <summary>Writes ca.crt and ca.key (0600 on Unix) into <paramref name="directory"/>.</summary>
    public void Save(string directory)
    {
        PemFiles.WriteCertificate(Path.Combine(directory, CertificateFileName), Certificate);
        PemFiles.WritePrivateKey(Path.Combine(directory, KeyFileName), Certificate);
    }

    /// <summary>A TLS server certificate for the given DNS names and IP addresses (subjectAltName; EKU serverAuth).</summary>
    public X509Certificate2 IssueServerCertificate(IEnumerable<string> hostsOrIps)
    {
        ArgumentNullException.ThrowIfNull(hostsOrIps);
        var hosts = hostsOrIps.Select(h => h.Trim()).Where(h => h.Length > 0).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        if (hosts.Count == 0) throw new ArgumentException("a server certificate needs at least one host name or IP address", nameof(hostsOrIps));
        var names = new SubjectAlternativeNameBuilder();
        foreach (var host in hosts)
        {
            if (IPAddress.TryParse(host, out var address)) names.AddIpAddress(address);
            else if (Uri.CheckHostName(host) == UriHostNameType.Dns) names.AddDnsName(host);
            else throw new ArgumentException($"server host '{host}' is neither a DNS name nor an IP address", nameof(hostsOrIps));
        }
        return Issue($"CN={hosts[0]}", names.Build(), ServerAuthOid, DateTimeOffset.UtcNow - ClockSkew, DateTimeOffset.UtcNow + LeafValidity);
    }

    /// <summary>A TLS client certificate for <paramref name="clientId"/>: CN = id, subjectAltName URI fedllm://client/{id}, EKU clientAuth.</summary>
    public X509Certificate2 IssueClientCertificate(string clientId) =>
        IssueClientCertificate(clientId, DateTimeOffset.UtcNow - ClockSkew, DateTimeOffset.UtcNow + LeafValidity);

    /// <summary>With explicit validity, so tests can make expired or not-yet-valid certificates.</summary>
    internal X509Certificate2 IssueClientCertificate(string clientId, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        ClientIds.Validate(clientId);
        var names = new SubjectAlternativeNameBuilder();
        names.AddUri(new Uri(ClientUriPrefix + clientId));
        return Issue($"CN={clientId}", names.Build(), ClientAuthOid, notBefore, notAfter);
    }

    /// <summary>An operator's certificate for the admin calls: CN "fedllm admin {name}" (not a client id, so it cannot act as
    /// a client), subjectAltName URI fedllm://admin/{name}, EKU clientAuth.</summary>
    public X509Certificate2 IssueAdminCertificate(string name)
    {
        ClientIds.Validate(name);
        var names = new SubjectAlternativeNameBuilder();
        names.AddUri(new Uri(AdminCertificates.UriPrefix + name));
        return Issue($"CN=fedllm admin {name}", names.Build(), ClientAuthOid, DateTimeOffset.UtcNow - ClockSkew, DateTimeOffset.UtcNow + LeafValidity);
    }

    private X509Certificate2 Issue(string subject, X509Extension alternativeNames, string usageOid, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        // A leaf may not outlive its issuer, nor start before it (CertificateRequest.Create refuses both); clamp to the CA.
        var caNotBefore = new DateTimeOffset(Certificate.NotBefore.ToUniversalTime());
        var caNotAfter = new DateTimeOffset(Certificate.NotAfter.ToUniversalTime());
        if (notBefore < caNotBefore) notBefore = caNotBefore;
        if (notAfter > caNotAfter) notAfter = caNotAfter;
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(subject), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usageOid)], critical: false));
        request.CertificateExtensions.Add(alternativeNames);
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, includeKeyIdentifier: true, includeIssuerAndSerial: false));
        var serial = RandomNumberGenerator.GetBytes(16);
        // DER integers are signed and minimal: a clear top bit keeps the serial positive (RFC 5280 §4.1.2.2), a set second
        // bit keeps the first byte from being a redundant zero.
        serial[0] = (byte)((serial[0] & 0x7F) | 0x40);
        using var issued = request.Create(Certificate, notBefore, notAfter, serial);
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>Frees the certificate and its private key.</summary>
    public void Dispose() => Certificate.Dispose();
}
