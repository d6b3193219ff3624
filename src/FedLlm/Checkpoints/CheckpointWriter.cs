using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace FedLlm.Checkpoints;

/// <summary>
/// Writes a model folder the way transformers' <c>save_pretrained</c> does: <c>model.safetensors</c>, or shards
/// <c>model-00001-of-00003.safetensors</c> plus <c>model.safetensors.index.json</c> when the weights exceed the shard size.
/// </summary>
public static partial class CheckpointWriter
{
    // What transformers writes into every file it saves; its loader rejects safetensors metadata without a known format.
    static readonly IReadOnlyDictionary<string, string> FormatMetadata = new Dictionary<string, string> { ["format"] = "pt" };

    /// <summary>Writes <paramref name="tensors"/> into <paramref name="directory"/> (created if missing), each file atomically.</summary>
    /// <param name="directory">Target folder.</param>
    /// <param name="tensors">Name/tensor pairs, in the order to store them; names must be unique.</param>
    /// <param name="maxShardBytes">Largest shard, in bytes of tensor data (headers not counted, as in Hugging Face).</param>
    /// <remarks>
    /// <para>
    /// Sharding follows huggingface_hub's <c>split_torch_state_dict_into_shards</c> exactly: tensors are taken in order,
    /// a tensor that would push the current shard over the limit starts a new one, and a tensor larger than the limit
    /// gets a shard of its own at once (so it can precede the shard still being filled). The index is written like
    /// transformers writes it: <c>{"metadata": {"total_size": N}, "weight_map": {...}}</c>, keys sorted, indented by 2.
    /// </para>
    /// <para>
    /// Each file is replaced atomically; the folder as a whole is not. Shards are written first, the index last, and
    /// files of an earlier save that the new one does not use are deleted (an old <c>model.safetensors</c> before the
    /// new index appears, since readers prefer it). For an all-or-nothing save, write to a new folder and rename it.
    /// Tensors sharing memory (tied weights) are stored once per name, not deduplicated.
    /// </para>
    /// </remarks>
    /// <exception cref="ArgumentException">A duplicate or reserved name, or a dtype safetensors cannot hold.</exception>
    public static void Write(
        string directory,
        IEnumerable<KeyValuePair<string, Tensor>> tensors,
        long maxShardBytes = long.MaxValue)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);

        var list = tensors.ToList();
        if (list.FirstOrDefault(kv => kv.Value is null) is { Key: { } nullName })
        {
            throw new ArgumentException($"Tensor '{nullName}' is null.", nameof(tensors));
        }
        var duplicate = list.GroupBy(kv => kv.Key, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            // Checked here because two shards would each accept their copy of the name.
            throw new ArgumentException($"Tensor name '{duplicate.Key}' appears twice.", nameof(tensors));
        }
        var shards = Split(list, maxShardBytes, out long totalSize);

        var folder = Path.GetFullPath(directory);
        Directory.CreateDirectory(folder);
        var single = Path.Combine(folder, CheckpointFolder.SingleFileName);
        var index = Path.Combine(folder, CheckpointFolder.IndexFileName);

        if (shards.Count <= 1)
        {
            SafeTensorsWriter.Write(single, shards.Count == 0 ? [] : shards[0], FormatMetadata);
            DeleteIfExists(index);
            DeleteStaleShards(folder, keep: []);
            return;
        }

        var shardNames = Enumerable.Range(1, shards.Count)
            .Select(i => $"model-{i:D5}-of-{shards.Count:D5}.safetensors")
            .ToList();
        for (int i = 0; i < shards.Count; i++)
        {
            SafeTensorsWriter.Write(Path.Combine(folder, shardNames[i]), shards[i], FormatMetadata);
        }
        DeleteIfExists(single);
        var weightMap = shards
            .SelectMany((shard, i) => shard.Select(kv => (Tensor: kv.Key, Shard: shardNames[i])))
            .ToList();
        Io.AtomicFile.Write(index, stream => WriteIndex(stream, totalSize, weightMap));
        DeleteStaleShards(folder, keep: shardNames.ToHashSet(StringComparer.Ordinal));
    }

    /// <summary>huggingface_hub's <c>split_state_dict_into_shards_factory</c>, by bytes of tensor data.</summary>
    internal static List<List<KeyValuePair<string, Tensor>>> Split(
        List<KeyValuePair<string, Tensor>> tensors,
        long maxShardBytes,
        out long totalSize)
    {
        var shards = new List<List<KeyValuePair<string, Tensor>>>();
        var current = new List<KeyValuePair<string, Tensor>>();
        long currentSize = 0;
        totalSize = 0;
        foreach (var kv in tensors)
        {
            long size = kv.Value.numel() * kv.Value.element_size();
            totalSize += size;
            if (size > maxShardBytes)
            {
                shards.Add([kv]);
                continue;
            }
            if (currentSize + size > maxShardBytes)
            {
                shards.Add(current);
                current = [];
                currentSize = 0;
            }
            current.Add(kv);
            currentSize += size;
        }
        if (current.Count > 0)
        {
            shards.Add(current);
        }
        return shards;
    }

    static void WriteIndex(Stream stream, long totalSize, List<(string Tensor, string Shard)> weightMap)
    {
        // json.dumps(index, indent=2, sort_keys=True) + "\n" in transformers. The relaxed encoder keeps '+' or '<' in names
        // as Python does; non-ASCII goes out as UTF-8 where Python writes \uXXXX, which parses to the same names.
        var options = new JsonWriterOptions { Indented = true, IndentSize = 2, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        using (var json = new Utf8JsonWriter(stream, options))
        {
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", totalSize);
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (tensor, shard) in weightMap.OrderBy(e => e.Tensor, StringComparer.Ordinal))
            {
                json.WriteString(tensor, shard);
            }
            json.WriteEndObject();
            json.WriteEndObject();
        }
        stream.WriteByte((byte)'\n');
    }

    [GeneratedRegex(@"^model-\d{5}-of-\d{5}\.safetensors$")]
    private static partial Regex ShardName();

    /// <summary>Deletes shard files of an earlier save that the new one does not use, as save_pretrained does.</summary>
    static void DeleteStaleShards(string folder, HashSet<string> keep)
    {
        foreach (var path in Directory.EnumerateFiles(folder, "model-*-of-*.safetensors"))
        {
            var name = Path.GetFileName(path);
            if (ShardName().IsMatch(name) && !keep.Contains(name))
            {
                File.Delete(path);
            }
        }
    }

    static void DeleteIfExists(string path)
    {
        if (File.Exists(path))
        {
            File.Delete(path);
        }
    }
}
