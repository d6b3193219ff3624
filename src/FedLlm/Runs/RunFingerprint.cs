using System.Collections;
using System.Reflection;
using System.Security.Cryptography;
using System.Text.Json;
using FedLlm.Configuration;

namespace FedLlm.Runs;

/// <summary>
/// What determines a run's result, as flat "key = value" pairs: the model (its config.json and weight files), the data
/// (SHA-256 of each file), the task, every hyper-parameter, the seed and the algorithm. Each run writes it into its output
/// folder (<see cref="FileName"/>) before its first checkpoint; a resume compares and refuses a run folder that was started
/// with other settings, listing the keys that differ, since continuing would silently mix two runs.
/// </summary>
public sealed class RunFingerprint
{
    /// <summary>The file name in the run folder.</summary>
    public const string FileName = "run-fingerprint.json";
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    readonly SortedDictionary<string, string> values;

    RunFingerprint(SortedDictionary<string, string> values) => this.values = values;

    /// <summary>The pairs, sorted by key.</summary>
    public IReadOnlyDictionary<string, string> Values => values;

    /// <summary>A fingerprint with no pairs; build one up with <see cref="With"/>.</summary>
    public static RunFingerprint Empty => new(new SortedDictionary<string, string>(StringComparer.Ordinal));

    /// <summary>This fingerprint with <paramref name="key"/> set.</summary>
    public RunFingerprint With(string key, object? value)
    {
        var copy = new SortedDictionary<string, string>(values, StringComparer.Ordinal) { [key] = ValueRules.Format(value) };
        return new RunFingerprint(copy);
    }

    /// <summary>This fingerprint with every public property of <paramref name="options"/> (recursively, records and
    /// lists) under <paramref name="prefix"/>, except the <paramref name="skip"/> ones (names as in C#).</summary>
    public RunFingerprint WithProperties(string prefix, object? options, params string[] skip)
    {
        var copy = new SortedDictionary<string, string>(values, StringComparer.Ordinal);
        Flatten(prefix, options, copy, skip, depth: 0);
        return new RunFingerprint(copy);
    }

    /// <summary>This fingerprint with the SHA-256 of the file (or of every file of the folder) at <paramref name="path"/>,
    /// or "none" when there is no path.</summary>
    public RunFingerprint WithData(string key, string? path) => With(key, path is null ? "none" : HashPath(path));

    /// <summary>This fingerprint with the model folder's identity: SHA-256 of config.json, and each weight file's name and size
    /// (hashing gigabytes of weights on every start would cost more than it protects).</summary>
    public RunFingerprint WithModel(string key, string modelDirectory)
    {
        string config = Path.Combine(modelDirectory, "config.json");
        var weights = Directory.Exists(modelDirectory)
            ? Directory.GetFiles(modelDirectory, "*.safetensors").Order(StringComparer.Ordinal)
                .Select(f => $"{Path.GetFileName(f)}:{new FileInfo(f).Length}")
            : [];
        return With($"{key}.config_sha256", File.Exists(config) ? HashFile(config) : "none").With($"{key}.weights", string.Join(",", weights));
    }

    /// <summary>"key: old → new" for every key both record with different values, then one line for keys only one of
    /// them records (a fingerprint written by another FedLlm version).</summary>
    public IReadOnlyList<string> Differences(RunFingerprint recorded)
    {
        var differences = recorded.values.Keys.Intersect(values.Keys).Order(StringComparer.Ordinal)
            .Where(k => recorded.values[k] != values[k])
            .Select(k => $"{k}: {Short(recorded.values[k])} → {Short(values[k])}")
            .ToList();
        var onlyOne = recorded.values.Keys.Except(values.Keys).Concat(values.Keys.Except(recorded.values.Keys)).Order(StringComparer.Ordinal).ToList();
        if (onlyOne.Count > 0)
            differences.Add($"{onlyOne.Count} key(s) recorded on one side only ({string.Join(", ", onlyOne.Take(5))}{(onlyOne.Count > 5 ? ", …" : "")})");
        return differences;
    }

    /// <summary>Writes the fingerprint into <paramref name="directory"/> (atomically).</summary>
    public void Write(string directory)
    {
        Directory.CreateDirectory(directory);
        Io.AtomicFile.WriteAllText(Path.Combine(directory, FileName), JsonSerializer.Serialize(values, Json));
    }

    /// <summary>The fingerprint recorded in <paramref name="directory"/>, or null when there is none.</summary>
    public static RunFingerprint? Read(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            var read = JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(path))
                ?? throw new ConfigurationException($"{path}: empty run fingerprint");
            return new RunFingerprint(new SortedDictionary<string, string>(read, StringComparer.Ordinal));
        }
        catch (JsonException)
        {
            throw new ConfigurationException($"{path}: not a run fingerprint (malformed JSON); restore it or start a new run in another folder");
        }
    }

    /// <summary>
    /// Before continuing the run in <paramref name="directory"/>: refuses when its recorded fingerprint differs from this
    /// one, naming each differing key; then records this one (also for runs that predate fingerprints).
    /// </summary>
    /// <exception cref="ConfigurationException">The folder was started with other settings.</exception>
    public void CheckAndRecord(string directory)
    {
        if (Read(directory) is { } recorded && Differences(recorded) is { Count: > 0 } diff)
            throw new ConfigurationException(
                $"--resume: {directory} was started with other settings, and continuing would mix two runs: {string.Join("; ", diff)}",
                ["resume with the settings it was started with, or give a new --output folder to start afresh"]);
        Write(directory);
    }

    /// <summary>Hex SHA-256 of a file, or of a folder's files (relative names and contents, in name order).</summary>
    public static string HashPath(string path)
    {
        if (File.Exists(path)) return HashFile(path);
        if (!Directory.Exists(path)) return "missing";
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var file in Directory.GetFiles(path, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(Path.GetRelativePath(path, file) + "\n"));
            sha.AppendData(Convert.FromHexString(HashFile(file)));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    static string HashFile(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    static string Short(string value) => value.Length == 64 && value.All(char.IsAsciiHexDigitLower) ? $"sha256 {value[..12]}…" : value;

    static void Flatten(string prefix, object? value, SortedDictionary<string, string> into, string[] skip, int depth)
    {
        switch (value)
        {
            case null:
                into[prefix] = "null";
                return;
            case string or bool or Enum or IFormattable:
                into[prefix] = ValueRules.Format(value);
                return;
            case IDictionary map:
                into[prefix] = string.Join(",", ValueRules.Entries(map).Select(e => $"{e.Key}={ValueRules.Format(e.Value)}").Order(StringComparer.Ordinal));
                return;
            case IEnumerable list:
                into[prefix] = string.Join(",", list.Cast<object?>().Select(ValueRules.Format));
                return;
        }
        if (depth > 4) return;
        foreach (var p in value.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (p.GetIndexParameters().Length > 0 || skip.Contains(p.Name) || p.GetMethod is null) continue;
            if (p.PropertyType.IsAssignableTo(typeof(Delegate))) continue;
            Flatten($"{prefix}.{Snake(p.Name)}", p.GetValue(value), into, skip, depth + 1);
        }
    }

    static string Snake(string name) => YamlDotNet.Serialization.NamingConventions.UnderscoredNamingConvention.Instance.Apply(name);
}
