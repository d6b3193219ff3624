using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace FedLlm.Security;

/// <summary>
/// Per-client bearer tokens, the second way (besides a client certificate) for a client to prove who it is: 32 random
/// bytes, base64url. The server keeps only SHA-256 hashes (client-tokens.json), so its file leaks no usable token.
/// </summary>
/// <remarks>
/// A plain hash is enough here, unlike for passwords: a 256-bit random token cannot be guessed from its hash, so no salt
/// or slow KDF is needed. Not thread-safe for writes; <see cref="Verify"/> may be called concurrently once loaded.
/// </remarks>
public sealed class ClientTokens
{
    /// <summary>The file's name in the server's kit folder.</summary>
    public const string FileName = "client-tokens.json";
    private const string Format = "fedllm-client-tokens";
    private const int TokenBytes = 32;

    // Longest token Verify will hash: far above a real one (43 chars), and keeps a hostile multi-megabyte header cheap.
    private const int MaxTokenLength = 256;

    private readonly SortedDictionary<string, byte[]> hashes = new(StringComparer.Ordinal);

    /// <summary>The clients that have a token.</summary>
    public IReadOnlyCollection<string> Clients => hashes.Keys;

    /// <summary>A fresh random token (32 bytes from the OS CSPRNG, base64url without padding: 43 characters).</summary>
    public static string NewToken() => Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(TokenBytes));

    /// <summary>Creates a token for <paramref name="clientId"/>, keeps its hash and returns the token (the only time it is
    /// seen: hand it to the client). An existing token of that client is replaced, which revokes it.</summary>
    public string Issue(string clientId)
    {
        ClientIds.Validate(clientId);
        var token = NewToken();
        hashes[clientId] = Hash(token);
        return token;
    }

    /// <summary>Revokes the client's token; true when there was one.</summary>
    public bool Remove(string clientId) => hashes.Remove(clientId);

    /// <summary>Whether <paramref name="clientId"/> has a token.</summary>
    public bool Contains(string clientId) => hashes.ContainsKey(clientId);

    /// <summary>Whether <paramref name="token"/> is <paramref name="clientId"/>'s token, compared in constant time.</summary>
    /// <remarks>An unknown client is compared against a dummy hash, so the time taken does not reveal which ids exist.</remarks>
    public bool Verify(string? clientId, string? token)
    {
        if (clientId is null || token is null || token.Length > MaxTokenLength) return false;
        bool known = hashes.TryGetValue(clientId, out var expected);
        var actual = Hash(token);
        bool equal = CryptographicOperations.FixedTimeEquals(actual, expected ?? new byte[actual.Length]);
        return known && equal;
    }

    /// <summary>Writes the token hashes (never the tokens) to <paramref name="path"/> atomically.</summary>
    public void Save(string path) => ClientHashFile.Save(path, Format, hashes);

    /// <exception cref="InvalidDataException">The file is not a token file or an entry is malformed; the message names the file and the client.</exception>
    public static ClientTokens Load(string path)
    {
        var tokens = new ClientTokens();
        foreach (var (id, hash) in ClientHashFile.Load(path, Format, "client token")) tokens.hashes[id] = hash;
        return tokens;
    }

    /// <summary>SHA-256 of the token's UTF-8 bytes.</summary>
    public static byte[] Hash(string token) => SHA256.HashData(Encoding.UTF8.GetBytes(token));
}
