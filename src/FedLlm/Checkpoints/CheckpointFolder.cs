using System.Text.Json;
using static TorchSharp.torch;

namespace FedLlm.Checkpoints;

/// <summary>
/// A Hugging Face model folder opened for reading: <c>model.safetensors</c>, or shards listed by
/// <c>model.safetensors.index.json</c> (<c>{"metadata": {...}, "weight_map": {tensor: shard file}}</c>).
/// </summary>
/// <remarks>
/// <para>
/// Like transformers' <c>from_pretrained</c>, <c>model.safetensors</c> wins when both it and an index are present.
/// Every shard is opened and checked at <see cref="Open(string)"/>, so a missing shard or a tensor missing from its shard
/// fails in the first second, not after minutes of loading. <see cref="Dispose"/> closes the shards.
/// </para>
/// <para>Reads of different tensors may run on several threads at once (see <see cref="SafeTensorsFile"/>).</para>
/// </remarks>
public sealed class CheckpointFolder : IDisposable
{
    /// <summary>File name of an unsharded checkpoint.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>File name of the index of a sharded checkpoint.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    readonly List<SafeTensorsFile> _files;
    readonly Dictionary<string, SafeTensorsFile> _fileByTensor;
    readonly string[] _names;

    CheckpointFolder(
        string directory,
        bool isSharded,
        List<SafeTensorsFile> files,
        Dictionary<string, SafeTensorsFile> fileByTensor,
        string[] names)
    {
        Directory = directory;
        IsSharded = isSharded;
        _files = files;
        _fileByTensor = fileByTensor;
        _names = names;
    }

    /// <summary>Full path of the folder.</summary>
    public string Directory { get; }

    /// <summary>True if the checkpoint is sharded (read through <see cref="IndexFileName"/>).</summary>
    public bool IsSharded { get; }

    /// <summary>Every tensor name, in file header order (unsharded) or index order (sharded).</summary>
    public IReadOnlyCollection<string> TensorNames => _names;

    /// <summary>Opens the checkpoint in <paramref name="directory"/> and validates every file it uses.</summary>
    /// <exception cref="CheckpointException">
    /// The folder has no safetensors checkpoint (the message lists what it does hold), the index is malformed or
    /// points to a missing shard, a shard lacks a tensor mapped to it, or a file is invalid.
    /// </exception>
    public static CheckpointFolder Open(string directory) => Open(directory, TensorMemory.DefaultChunkBytes);

    /// <summary>As <see cref="Open(string)"/>, with the conversion chunk size set (tests use a tiny one).</summary>
    internal static CheckpointFolder Open(string directory, int chunkBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var folder = System.IO.Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(folder))
        {
            throw new CheckpointException($"Checkpoint folder '{folder}' does not exist.");
        }
        var single = System.IO.Path.Combine(folder, SingleFileName);
        if (File.Exists(single))
        {
            var file = SafeTensorsFile.Open(single, chunkBytes);
            var byTensor = file.Tensors.Keys.ToDictionary(n => n, _ => file, StringComparer.Ordinal);
            return new CheckpointFolder(folder, isSharded: false, [file], byTensor, file.Tensors.Keys.ToArray());
        }
        var index = System.IO.Path.Combine(folder, IndexFileName);
        if (File.Exists(index))
        {
            return OpenSharded(folder, index, chunkBytes);
        }
        throw new CheckpointException(
            $"Checkpoint folder '{folder}' has neither {SingleFileName} nor {IndexFileName}. {DescribeContents(folder)} " +
            "FedLlm reads safetensors only: PyTorch .bin checkpoints are pickles, which can run code when loaded, and are " +
            "not supported; convert them once with transformers (model.save_pretrained(folder, safe_serialization=True)).");
    }

    /// <summary>True if the checkpoint has a tensor of this name.</summary>
    public bool Contains(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _fileByTensor.ContainsKey(name);
    }

    /// <summary>Dtype, shape and location of a tensor (the offset is within the file that holds it).</summary>
    /// <exception cref="CheckpointException">No such tensor.</exception>
    public SafeTensorInfo Info(string name) => FileOf(name).Tensors[name];

    /// <summary>The path of the file (single file or shard) that holds a tensor.</summary>
    /// <exception cref="CheckpointException">No such tensor.</exception>
    public string FileHolding(string name) => FileOf(name).Path;

    /// <summary>Copies a tensor into <paramref name="destination"/>, converting its dtype; see <see cref="SafeTensorsFile.ReadInto"/>.</summary>
    /// <exception cref="CheckpointException">No such tensor, or the shapes differ; the message names the shard file and tensor.</exception>
    public void ReadInto(string name, Tensor destination) => FileOf(name).ReadInto(name, destination);

    /// <summary>Reads a tensor into a new CPU tensor owned by the caller; see <see cref="SafeTensorsFile.Read"/>.</summary>
    /// <exception cref="CheckpointException">No such tensor.</exception>
    public Tensor Read(string name, ScalarType? dtype = null) => FileOf(name).Read(name, dtype);

    /// <summary>A tensor viewing the file's bytes in place (a private memory map), owned by the caller, or null when the
    /// tensor cannot be mapped; see <see cref="SafeTensorsFile.Map"/>.</summary>
    /// <exception cref="CheckpointException">No such tensor, or its file was truncated after opening.</exception>
    public Tensor? Map(string name) => FileOf(name).Map(name);

    /// <summary>A tensor viewing the file's bytes in place, every element checked finite, owned by the caller, or null
    /// when the tensor cannot be mapped; see <see cref="SafeTensorsFile.MapFinite"/>.</summary>
    /// <exception cref="NonFiniteTensorException">An element is NaN or infinite; the message names the shard file.</exception>
    /// <exception cref="CheckpointException">No such tensor, or its file was truncated after opening.</exception>
    public Tensor? MapFinite(string name) => FileOf(name).MapFinite(name);

    /// <summary>Copies a tensor into <paramref name="destination"/>, converting its dtype and checking every value finite
    /// in one pass; see <see cref="SafeTensorsFile.ReadFiniteInto"/>.</summary>
    /// <exception cref="NonFiniteTensorException">An element is NaN or infinite; the message names the shard file.</exception>
    /// <exception cref="CheckpointException">No such tensor, or the shapes differ; the message names the shard file and tensor.</exception>
    public void ReadFiniteInto(string name, Tensor destination) => FileOf(name).ReadFiniteInto(name, destination);

    /// <summary>Closes every file of the checkpoint.</summary>
    public void Dispose()
    {
        foreach (var file in _files)
        {
            file.Dispose();
        }
    }

    SafeTensorsFile FileOf(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (_fileByTensor.TryGetValue(name, out var file))
        {
            return file;
        }
        var source = IsSharded ? IndexFileName : SingleFileName;
        throw new CheckpointException(
            $"Tensor '{name}' is not in checkpoint folder '{Directory}' ({_names.Length} tensors in its {source})" +
            $"{SafeTensorsFile.SimilarNames(name, _names)}.");
    }

    static CheckpointFolder OpenSharded(string folder, string index, int chunkBytes)
    {
        var weightMap = ReadWeightMap(index);
        var files = new List<SafeTensorsFile>();
        try
        {
            var fileByShard = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            var fileByTensor = new Dictionary<string, SafeTensorsFile>(weightMap.Count, StringComparer.Ordinal);
            foreach (var (tensor, shard) in weightMap)
            {
                if (!fileByShard.TryGetValue(shard, out var file))
                {
                    var shardPath = System.IO.Path.Combine(folder, shard);
                    if (!File.Exists(shardPath))
                    {
                        throw new CheckpointException(
                            $"{index} maps tensor '{tensor}' to shard '{shard}', which is not in '{folder}'. " +
                            DescribeContents(folder));
                    }
                    file = SafeTensorsFile.Open(shardPath, chunkBytes);
                    files.Add(file);
                    fileByShard.Add(shard, file);
                }
                if (!file.Tensors.ContainsKey(tensor))
                {
                    throw new CheckpointException(
                        $"{index} maps tensor '{tensor}' to shard '{file.Path}', but that shard does not contain it " +
                        $"({file.Tensors.Count} tensors){SafeTensorsFile.SimilarNames(tensor, file.Tensors.Keys)}.");
                }
                fileByTensor.Add(tensor, file);
            }
            return new CheckpointFolder(folder, isSharded: true, files, fileByTensor, weightMap.Select(kv => kv.Key).ToArray());
        }
        catch
        {
            foreach (var file in files)
            {
                file.Dispose();
            }
            throw;
        }
    }

    /// <summary>The index's weight_map, in file order, with every shard name checked to be a plain file name.</summary>
    static List<KeyValuePair<string, string>> ReadWeightMap(string index)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(index));
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"Checkpoint index '{index}' is not valid JSON ({e.Message}).", e);
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("weight_map", out var map)
                || map.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointException($"Checkpoint index '{index}' has no \"weight_map\" object.");
            }
            var weightMap = new List<KeyValuePair<string, string>>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                {
                    throw new CheckpointException(
                        $"Checkpoint index '{index}' maps tensor '{entry.Name}' to a JSON {entry.Value.ValueKind}, not a shard file name.");
                }
                var shard = entry.Value.GetString()!;
                // Only plain names: an index must not make us open files outside the checkpoint folder.
                if (shard.Length == 0 || shard is "." or ".." || shard.IndexOfAny(['/', '\\']) >= 0)
                {
                    throw new CheckpointException(
                        $"Checkpoint index '{index}' maps tensor '{entry.Name}' to '{shard}', which is not a file name in the folder.");
                }
                if (!seen.Add(entry.Name))
                {
                    throw new CheckpointException($"Checkpoint index '{index}' maps tensor '{entry.Name}' twice.");
                }
                weightMap.Add(new(entry.Name, shard));
            }
            return weightMap;
        }
    }

    /// <summary>"It holds: a, b, c." (up to 20 names), so a wrong folder or format is obvious from the message.</summary>
    static string DescribeContents(string folder)
    {
        const int MaxListed = 20;
        var names = System.IO.Directory.EnumerateFileSystemEntries(folder)
            .Select(p => System.IO.Path.GetFileName(p) + (System.IO.Directory.Exists(p) ? "/" : ""))
            .Order(StringComparer.Ordinal)
            .ToList();
        if (names.Count == 0)
        {
            return "The folder is empty.";
        }
        var listed = string.Join(", ", names.Take(MaxListed));
        return names.Count > MaxListed
            ? $"It holds {names.Count} entries: {listed}, ..."
            : $"It holds: {listed}.";
    }
}
