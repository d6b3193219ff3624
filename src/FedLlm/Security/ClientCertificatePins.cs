using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace FedLlm.Security;

/// <summary>
/// The one current certificate of each client, by SHA-256 of its DER bytes (client-certificates.json beside the token
/// hashes). The kit has no revocation lists, so without pins a re-issued client's old certificate would stay valid until
/// it expires; with them the server accepts only the certificate it issued last.
/// </summary>
public sealed class ClientCertificatePins
{
    /// <summary>The file's name in the server's kit folder.</summary>
    public const string FileName = "client-certificates.json";
    private const string Format = "fedllm-client-certificates";

    private readonly SortedDictionary<string, byte[]> pins = new(StringComparer.Ordinal);

    /// <summary>The clients with a pinned certificate.</summary>
    public IReadOnlyCollection<string> Clients => pins.Keys;

    /// <summary>Makes <paramref name="certificate"/> the client's only accepted certificate (replacing an earlier one).</summary>
    public void Pin(string clientId, X509Certificate2 certificate)
    {
        ClientIds.Validate(clientId);
        pins[clientId] = SHA256.HashData(certificate.RawData);
    }

    /// <summary>Drops the client's pin, so none of its certificates is accepted; true when there was one.</summary>
    public bool Remove(string clientId) => pins.Remove(clientId);

    /// <summary>Whether <paramref name="certificate"/> is the one pinned for <paramref name="clientId"/>.</summary>
    public bool IsCurrent(string clientId, X509Certificate2 certificate) =>
        pins.TryGetValue(clientId, out var pinned) && CryptographicOperations.FixedTimeEquals(pinned, SHA256.HashData(certificate.RawData));

    /// <summary>Writes the pins to <paramref name="path"/> atomically.</summary>
    public void Save(string path) => ClientHashFile.Save(path, Format, pins);

    /// <exception cref="InvalidDataException">The file is malformed; the message names the file and the client.</exception>
    public static ClientCertificatePins Load(string path)
    {
        var loaded = new ClientCertificatePins();
        foreach (var (id, hash) in ClientHashFile.Load(path, Format, "client certificate pin")) loaded.pins[id] = hash;
        return loaded;
    }
}
