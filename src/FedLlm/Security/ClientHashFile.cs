using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using FedLlm.Io;

namespace FedLlm.Security;

/// <summary>
/// The server's JSON files that map client ids to SHA-256 hashes (client-tokens.json, client-certificates.json):
/// {"format": ..., "version": 1, "hash": "sha256", "clients": {"alice": "&lt;base64url&gt;", ...}}.
/// </summary>
internal static class ClientHashFile
{
    public static void Save(string path, string format, IReadOnlyDictionary<string, byte[]> hashes)
    {
        var clients = new JsonObject();
        foreach (var (id, hash) in hashes.OrderBy(kv => kv.Key, StringComparer.Ordinal)) clients[id] = Base64Url.EncodeToString(hash);
        var document = new JsonObject { ["format"] = format, ["version"] = 1, ["hash"] = "sha256", ["clients"] = clients };
        AtomicFile.WriteAllText(path, document.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <exception cref="InvalidDataException">Not such a file, or an entry is malformed; the message names the file and the client.</exception>
    public static SortedDictionary<string, byte[]> Load(string path, string format, string what)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{what} file {path} does not exist", path);
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e); }
        if (root is not JsonObject obj || (string?)obj["format"] != format)
            throw new InvalidDataException($"{path}: not a FedLlm {what} file (expected \"format\": \"{format}\")");
        if ((string?)obj["hash"] != "sha256")
            throw new InvalidDataException($"{path}: hash '{obj["hash"]}' is not supported (expected sha256)");
        if (obj["clients"] is not JsonObject clients)
            throw new InvalidDataException($"{path}: \"clients\" must be an object mapping client id to hash");
        var hashes = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var (id, value) in clients)
        {
            if (!ClientIds.IsValid(id))
                throw new InvalidDataException($"{path}: client id '{id}' is not a valid client id");
            byte[]? hash = null;
            if (value is JsonValue v && v.TryGetValue(out string? text))
            {
                try { hash = Base64Url.DecodeFromChars(text); }
                catch (FormatException) { /* reported below */ }
            }
            if (hash is not { Length: SHA256.HashSizeInBytes })
                throw new InvalidDataException($"{path}: client '{id}' has no valid SHA-256 hash (43 base64url characters)");
            hashes[id] = hash;
        }
        return hashes;
    }
}
