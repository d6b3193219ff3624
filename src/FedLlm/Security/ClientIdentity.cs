using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace FedLlm.Security;

/// <summary>
/// Who a TLS client is: the server calls <see cref="Verify(X509Certificate2, X509Certificate2)"/> on the certificate a
/// client presented and uses the returned id as the client's identity for the whole connection, so a client cannot
/// send an update in another client's name.
/// </summary>
public static class ClientIdentity
{
    /// <summary>Checks <paramref name="presented"/> against our CA and returns the client id it proves.</summary>
    /// <remarks>
    /// The chain must build to exactly <paramref name="ca"/> (custom root trust: the machine's trust store plays no part,
    /// so a certificate from any public CA is refused), with no revocation check (the kit has no CRL and the server may be
    /// offline). The certificate must be a leaf with the clientAuth usage and be within its validity period. The id comes
    /// from the subjectAltName URI fedllm://client/{id}, falling back to the CN for certificates without one.
    /// </remarks>
    /// <exception cref="AuthenticationException">The certificate does not prove a client identity; the message says why.</exception>
    public static string Verify(X509Certificate2 presented, X509Certificate2 ca) => Verify(presented, ca, DateTime.UtcNow);

    internal static string Verify(X509Certificate2 presented, X509Certificate2 ca, DateTime now)
    {
        ArgumentNullException.ThrowIfNull(presented);
        ArgumentNullException.ThrowIfNull(ca);
        string who = $"client certificate '{presented.Subject}' (serial {presented.SerialNumber})";

        if (presented.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault() is { CertificateAuthority: true })
            throw new AuthenticationException($"{who} is a CA certificate, not a client's");
        if (!HasUsage(presented, CertificateAuthority.ClientAuthOid))
            throw new AuthenticationException($"{who} is not issued for client authentication (no clientAuth extended key usage; a server certificate?)");
        RequireTimeValid(presented, now, who);
        BuildToCa(presented, ca, now, CertificateAuthority.ClientAuthOid, who);

        string id = IdFromUri(presented) ?? presented.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        if (!ClientIds.IsValid(id))
            throw new AuthenticationException($"{who} names client '{id}', which is not a valid client id");
        return id;
    }

    /// <summary>The id in the first fedllm://client/{id} subjectAltName URI, or null when there is none.</summary>
    private static string? IdFromUri(X509Certificate2 certificate) =>
        SubjectAlternativeNames.Uris(certificate)
            .Where(u => u.StartsWith(CertificateAuthority.ClientUriPrefix, StringComparison.Ordinal))
            .Select(u => u[CertificateAuthority.ClientUriPrefix.Length..])
            .FirstOrDefault();

    internal static bool HasUsage(X509Certificate2 certificate, string usageOid) =>
        certificate.Extensions.OfType<X509EnhancedKeyUsageExtension>()
            .Any(e => e.EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>().Any(o => o.Value == usageOid));

    internal static void RequireTimeValid(X509Certificate2 certificate, DateTime now, string who)
    {
        if (now < certificate.NotBefore.ToUniversalTime())
            throw new AuthenticationException($"{who} is not valid before {certificate.NotBefore.ToUniversalTime():u} (now {now:u}); check the clocks");
        if (now > certificate.NotAfter.ToUniversalTime())
            throw new AuthenticationException($"{who} expired on {certificate.NotAfter.ToUniversalTime():u}; issue a new one with `fedllm certs --add-client`");
    }

    /// <summary>Builds the chain with <paramref name="ca"/> as the only trusted root and requires it to end there.</summary>
    internal static void BuildToCa(X509Certificate2 leaf, X509Certificate2 ca, DateTime now, string usageOid, string who)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        chain.ChainPolicy.VerificationTime = now.ToLocalTime();
        chain.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid(usageOid));
        try
        {
            if (!chain.Build(leaf))
            {
                var reasons = chain.ChainStatus.Select(s => $"{s.Status} ({s.StatusInformation.Trim()})").Distinct();
                throw new AuthenticationException($"{who} was not issued by this federation's CA '{ca.Subject}': {string.Join("; ", reasons)}");
            }
            var root = chain.ChainElements[^1].Certificate;
            if (chain.ChainElements.Count != 2 || !root.RawDataMemory.Span.SequenceEqual(ca.RawDataMemory.Span))
                throw new AuthenticationException($"{who} chains to '{root.Subject}', not directly to this federation's CA '{ca.Subject}'");
        }
        finally
        {
            foreach (var element in chain.ChainElements) element.Certificate.Dispose();
        }
    }
}
