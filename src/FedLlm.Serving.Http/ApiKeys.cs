using System.Security.Cryptography;
using System.Text;

namespace FedLlm.Serving.Http;

/// <summary>The keys a client may present as <c>Authorization: Bearer KEY</c>; none means the server is open.</summary>
public sealed class ApiKeys
{
    private readonly byte[][] hashes;

    /// <summary>Keeps the SHA-256 hashes of <paramref name="keys"/> (trimmed, blanks and duplicates dropped), never the
    /// keys themselves; an empty list leaves the server open.</summary>
    public ApiKeys(IEnumerable<string> keys)
    {
        var list = keys.Select(k => k.Trim()).Where(k => k.Length > 0).Distinct(StringComparer.Ordinal).ToList();
        // Compare hashes in constant time, so neither a key's length nor its prefix leaks through timing.
        hashes = list.Select(k => SHA256.HashData(Encoding.UTF8.GetBytes(k))).ToArray();
    }

    /// <summary>No key: every request is accepted.</summary>
    public static ApiKeys None { get; } = new(Array.Empty<string>());

    /// <summary>True when at least one key was given, so requests without a matching bearer token get 401.</summary>
    public bool Required => hashes.Length > 0;

    /// <summary>Reads a keys file: one key per line; blank lines and lines starting with # are skipped.</summary>
    /// <exception cref="InvalidDataException">The file is missing or holds no key.</exception>
    public static IReadOnlyList<string> ReadFile(string path)
    {
        if (!File.Exists(path)) throw new InvalidDataException($"{path}: API keys file not found (--api-keys-file)");
        var keys = File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        if (keys.Count == 0) throw new InvalidDataException($"{path}: the API keys file holds no key (one per line)");
        return keys;
    }

    /// <summary>True when the Authorization header carries one of the keys (or no key is required).</summary>
    public bool Accepts(string? authorizationHeader)
    {
        if (!Required) return true;
        const string scheme = "Bearer ";
        if (authorizationHeader is null || !authorizationHeader.StartsWith(scheme, StringComparison.OrdinalIgnoreCase)) return false;
        var presented = SHA256.HashData(Encoding.UTF8.GetBytes(authorizationHeader[scheme.Length..].Trim()));
        bool match = false;
        foreach (var hash in hashes) match |= CryptographicOperations.FixedTimeEquals(hash, presented);
        return match;
    }
}
