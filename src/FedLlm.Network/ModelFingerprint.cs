using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace FedLlm.Network;

/// <summary>
/// Identifies a base model by the SHA-256 of config.json and of every *.safetensors file: a client whose base differs
/// (another size or vocabulary, or the same config with other weights) would train an adapter that does not fit the
/// server's, so the handshake refuses it and names the file that differs.
/// </summary>
/// <remarks>
/// Hashing a 7B checkpoint reads about 28 GB, so the file hashes are cached beside the model in
/// <see cref="CacheFileName"/>, keyed by each file's size and modification time: a file that changes is hashed again.
/// A read-only model folder simply goes without the cache.
/// </remarks>
public sealed record ModelFingerprint(IReadOnlyDictionary<string, string> Files)
{
    /// <summary>Name of the hash cache file written into the model folder.</summary>
    public const string CacheFileName = ".fedllm-fingerprint";
    const string ConfigFile = "config.json";

    /// <summary>One hex SHA-256 over the sorted (file, hash) pairs: what the handshake compares first.</summary>
    public string Combined { get; } = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(
        string.Join("\n", Files.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} {kv.Value}")))));

    /// <summary>Fingerprints the model in <paramref name="modelDirectory"/>: config.json and every *.safetensors file,
    /// hashing only files whose size or modification time changed since the cached hash.</summary>
    /// <exception cref="FileNotFoundException">The folder has no config.json.</exception>
    public static ModelFingerprint Of(string modelDirectory)
    {
        string config = Path.Combine(modelDirectory, ConfigFile);
        if (!File.Exists(config)) throw new FileNotFoundException($"{config}: the model folder has no config.json", config);
        var files = new[] { config }.Concat(Directory.GetFiles(modelDirectory, "*.safetensors").Order(StringComparer.Ordinal)).ToList();
        string cachePath = Path.Combine(modelDirectory, CacheFileName);
        var cache = ReadCache(cachePath);
        var hashes = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var entries = new Dictionary<string, CacheEntry>(StringComparer.Ordinal);
        bool changed = false;
        foreach (var path in files)
        {
            var info = new FileInfo(path);
            var key = new CacheEntry(info.Length, info.LastWriteTimeUtc.Ticks, "");
            if (cache.TryGetValue(info.Name, out var cached) && cached.Size == key.Size && cached.ModifiedTicks == key.ModifiedTicks)
                entries[info.Name] = cached;
            else
            {
                using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
                entries[info.Name] = key with { Sha256 = Convert.ToHexStringLower(SHA256.HashData(stream)) };
                changed = true;
            }
            hashes[info.Name] = entries[info.Name].Sha256;
        }
        if (changed || cache.Count != entries.Count) WriteCache(cachePath, entries);
        return new ModelFingerprint(hashes);
    }

    /// <summary>What differs between this (the server's) model and <paramref name="client"/>'s, in one sentence.</summary>
    public string Differences(IReadOnlyDictionary<string, string> client)
    {
        var parts = new List<string>();
        foreach (var (file, hash) in Files)
        {
            if (!client.TryGetValue(file, out var theirs)) parts.Add($"the client has no {file}");
            else if (theirs != hash) parts.Add($"{file} differs (client {Short(theirs)}, server {Short(hash)})");
        }
        foreach (var file in client.Keys.Where(f => !Files.ContainsKey(f)).Order(StringComparer.Ordinal))
            parts.Add($"the server has no {file}");
        return parts.Count == 0 ? "the fingerprints differ" : string.Join("; ", parts);
    }

    static string Short(string hash) => hash.Length > 12 ? hash[..12] : hash;

    sealed record CacheEntry(long Size, long ModifiedTicks, string Sha256);

    static Dictionary<string, CacheEntry> ReadCache(string path)
    {
        try
        {
            if (File.Exists(path))
                return JsonSerializer.Deserialize<Dictionary<string, CacheEntry>>(File.ReadAllText(path)) ?? new();
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException or NotSupportedException)
        {
            // A damaged or unreadable cache only costs a re-hash.
        }
        return new();
    }

    static void WriteCache(string path, Dictionary<string, CacheEntry> entries)
    {
        try
        {
            Io.AtomicFile.WriteAllText(path, JsonSerializer.Serialize(entries, new JsonSerializerOptions { WriteIndented = true }));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A read-only model folder: hash again next time.
        }
    }

    /// <summary>The first 12 hex digits of <see cref="Combined"/> and the number of files, for log lines.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Combined[..12]} ({Files.Count} files)");
}
