using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace FedLlm.Security;

/// <summary>Decides which client a request speaks for, from its TLS client certificate or its token.</summary>
public static class ClientAuthenticator
{
    /// <summary>
    /// The authenticated client id of a request. A presented certificate wins: its id is the identity, and a request
    /// that claims another id is refused (no client sends in another's name). Without a certificate, the claimed id
    /// and its token must match a stored token hash.
    /// </summary>
    /// <param name="presented">The TLS client certificate, or null.</param>
    /// <param name="claimedClientId">The id the request names (gRPC metadata), or null.</param>
    /// <param name="token">The bearer token the request carries, or null.</param>
    /// <param name="allowedClients">When given, only these ids are admitted even with a valid certificate: the server's
    /// client list, which is how a client is shut out before its certificate expires (the kit has no revocation lists).</param>
    /// <exception cref="AuthenticationException">Neither proves an identity, or they contradict; the message says which.</exception>
    /// <param name="pins">When given, a certificate must also be its client's current one (not an earlier, re-issued one).</param>
    /// <param name="ca">The kit's CA, which a presented certificate must chain to.</param>
    /// <param name="tokens">The stored token hashes.</param>
    public static string Authenticate(X509Certificate2? presented, string? claimedClientId, string? token, X509Certificate2 ca, ClientTokens tokens,
        IReadOnlySet<string>? allowedClients = null, ClientCertificatePins? pins = null)
    {
        string id = Identify(presented, claimedClientId, token, ca, tokens);
        if (presented is not null && pins is not null && !pins.IsCurrent(id, presented))
            throw new AuthenticationException($"client '{id}' presented a certificate that is not its current one (re-issued or revoked); " +
                $"use the certificate from its latest kit");
        if (allowedClients is not null && !allowedClients.Contains(id))
            throw new AuthenticationException($"client '{id}' proved its identity but is not among this server's clients");
        return id;
    }

    private static string Identify(X509Certificate2? presented, string? claimedClientId, string? token, X509Certificate2 ca, ClientTokens tokens)
    {
        ArgumentNullException.ThrowIfNull(ca);
        ArgumentNullException.ThrowIfNull(tokens);
        if (presented is not null)
        {
            string proven = ClientIdentity.Verify(presented, ca);
            if (claimedClientId is not null && claimedClientId != proven)
                throw new AuthenticationException($"the client certificate proves '{proven}', but the request claims to be '{claimedClientId}'");
            return proven;
        }
        if (string.IsNullOrEmpty(claimedClientId))
            throw new AuthenticationException("the request has neither a client certificate nor a client id with a token");
        if (string.IsNullOrEmpty(token))
            throw new AuthenticationException($"client '{claimedClientId}' presented neither a certificate nor a token");
        if (!tokens.Verify(claimedClientId, token))
            throw new AuthenticationException($"client '{claimedClientId}': the token is not valid for this client");
        return claimedClientId;
    }
}
