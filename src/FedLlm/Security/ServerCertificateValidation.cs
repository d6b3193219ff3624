using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace FedLlm.Security;

/// <summary>How a client decides that it talks to the federation's server and not to an impostor.</summary>
public static class ServerCertificateValidation
{
    /// <summary>
    /// A TLS callback that accepts the server only if its certificate chains to <paramref name="ca"/> (our CA is the only
    /// trusted root: public CAs are not trusted), carries the serverAuth usage, is within its validity period, and names
    /// the host the client dialled (TLS's own name check, which the platform reports as
    /// <see cref="SslPolicyErrors.RemoteCertificateNameMismatch"/>).
    /// </summary>
    /// <param name="ca">The CA certificate from the client's kit (ca.crt).</param>
    /// <param name="rejected">Called with the reason when the server is refused, for the client's log.</param>
    public static RemoteCertificateValidationCallback PinnedToCa(X509Certificate2 ca, Action<string>? rejected = null)
    {
        ArgumentNullException.ThrowIfNull(ca);
        return (_, certificate, _, errors) =>
        {
            var problem = Problem(certificate, errors, ca, DateTime.UtcNow);
            if (problem is not null) rejected?.Invoke(problem);
            return problem is null;
        };
    }

    /// <summary>Why the server's certificate is refused, or null when it is accepted.</summary>
    internal static string? Problem(X509Certificate? certificate, SslPolicyErrors errors, X509Certificate2 ca, DateTime now)
    {
        if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
            return "the server presented no certificate";
        using var server = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        string who = $"server certificate '{server.Subject}'";
        // The platform's chain errors are expected (our CA is in no system store) and replaced by our own chain below;
        // its name check is not, and is kept.
        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
            return $"{who} does not name the host this client dialled; connect with a host name or IP listed in `fedllm certs --server-host`";
        if (!ClientIdentity.HasUsage(server, CertificateAuthority.ServerAuthOid))
            return $"{who} is not issued for server authentication";
        try
        {
            ClientIdentity.RequireTimeValid(server, now, who);
            ClientIdentity.BuildToCa(server, ca, now, CertificateAuthority.ServerAuthOid, who);
        }
        catch (AuthenticationException e)
        {
            return e.Message;
        }
        return null;
    }
}
