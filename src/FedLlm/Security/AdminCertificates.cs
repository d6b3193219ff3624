using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace FedLlm.Security;

/// <summary>
/// The operator's certificates (admin-certificates.json beside the server's kit): an admin certificate is issued by the
/// federation's CA with the subjectAltName URI fedllm://admin/{name}, and the server accepts it for the admin calls only
/// when its SHA-256 is listed here. Its CN is not a valid client id, so it can never act as a client.
/// </summary>
public sealed class AdminCertificates
{
    /// <summary>The file's name in the server's kit folder.</summary>
    public const string FileName = "admin-certificates.json";

    /// <summary>URI form of an admin's name in its certificate's subjectAltName.</summary>
    public const string UriPrefix = "fedllm://admin/";
    private const string Format = "fedllm-admin-certificates";

    private readonly SortedDictionary<string, byte[]> pins = new(StringComparer.Ordinal);

    /// <summary>The names of the admins whose certificates are pinned.</summary>
    public IReadOnlyCollection<string> Admins => pins.Keys;

    /// <summary>Makes <paramref name="certificate"/> the only accepted one of admin <paramref name="name"/> (its
    /// SHA-256 is kept, replacing an earlier pin).</summary>
    /// <exception cref="ArgumentException">The name breaks the id rule of <see cref="ClientIds"/>.</exception>
    public void Pin(string name, X509Certificate2 certificate)
    {
        ClientIds.Validate(name);
        pins[name] = SHA256.HashData(certificate.RawData);
    }

    /// <summary>Writes the pins to <paramref name="path"/> atomically.</summary>
    public void Save(string path) => ClientHashFile.Save(path, Format, pins);

    /// <exception cref="InvalidDataException">The file is malformed; the message names the file.</exception>
    public static AdminCertificates Load(string path)
    {
        var loaded = new AdminCertificates();
        foreach (var (name, hash) in ClientHashFile.Load(path, Format, "admin certificate pin")) loaded.pins[name] = hash;
        return loaded;
    }

    /// <summary>The admin <paramref name="presented"/> proves: issued by <paramref name="ca"/> for client authentication,
    /// valid now, named fedllm://admin/{name}, and pinned here.</summary>
    /// <exception cref="AuthenticationException">It is not a current admin certificate; the message says why.</exception>
    public string Verify(X509Certificate2 presented, X509Certificate2 ca)
    {
        string? name = NameOf(presented);
        string who = $"certificate '{presented.Subject}'";
        if (name is null) throw new AuthenticationException($"{who} is not an admin certificate (issue one with `fedllm certs --admin NAME`)");
        if (!ClientIdentity.HasUsage(presented, CertificateAuthority.ClientAuthOid))
            throw new AuthenticationException($"{who} is not issued for client authentication");
        ClientIdentity.RequireTimeValid(presented, DateTime.UtcNow, who);
        ClientIdentity.BuildToCa(presented, ca, DateTime.UtcNow, CertificateAuthority.ClientAuthOid, who);
        if (!pins.TryGetValue(name, out var pinned) || !CryptographicOperations.FixedTimeEquals(pinned, SHA256.HashData(presented.RawData)))
            throw new AuthenticationException($"admin '{name}' is not among this server's admins ({FileName}); copy the kit's server/{FileName} to the server");
        return name;
    }

    /// <summary>The name in the certificate's fedllm://admin/{name} URI, or null.</summary>
    public static string? NameOf(X509Certificate2 certificate) =>
        SubjectAlternativeNames.Uris(certificate).Where(u => u.StartsWith(UriPrefix, StringComparison.Ordinal)).Select(u => u[UriPrefix.Length..]).FirstOrDefault();
}
