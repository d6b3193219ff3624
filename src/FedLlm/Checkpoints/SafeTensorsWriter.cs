using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Checkpoints;

/// <summary>Writes safetensors files that the Hugging Face <c>safetensors</c> library (and so transformers and PEFT) reads.</summary>
public static class SafeTensorsWriter
{
    const string MetadataKey = "__metadata__";
    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/>, atomically: a temporary file in the same folder is
    /// written, flushed to disk, then renamed over the target.
    /// </summary>
    /// <param name="path">Target file; its folder must exist.</param>
    /// <param name="tensors">Name/tensor pairs. Names must be unique; tensors may be of any device and layout.</param>
    /// <param name="metadata">Optional <c>__metadata__</c> strings (transformers expects <c>{"format": "pt"}</c>).</param>
    /// <remarks>
    /// <para>
    /// The header is compact JSON padded with spaces to a multiple of 8 bytes, as the reference implementation writes it.
    /// Header entries keep the given order; the data is laid out by descending element size (stable), as the reference
    /// implementation does, so every tensor starts at a multiple of its element size. Python readers need that alignment
    /// to view the bytes as the tensor's type. The same input always gives the same bytes.
    /// </para>
    /// <para>
    /// Contiguous CPU tensors are written straight from their memory. Others are copied a few rows (about 8 MiB) at a
    /// time, so saving never needs a second full copy of the weights.
    /// </para>
    /// </remarks>
    /// <exception cref="ArgumentException">A duplicate or reserved name, or a dtype safetensors cannot hold.</exception>
    public static void Write(
        string path,
        IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, tensors, metadata, TensorMemory.DefaultChunkBytes);

    /// <summary>As the public overload, with the chunk size for non-contiguous tensors set (tests use a tiny one).</summary>
    internal static void Write(
        string path,
        IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata,
        int chunkBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkBytes);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("safetensors data is little-endian and is written without byte swapping.");
        }

        var entries = Plan(tensors);
        var header = BuildHeader(entries, metadata);
        Io.AtomicFile.Write(path, stream =>
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            stream.Write(prefix);
            stream.Write(header);
            foreach (var entry in entries.OrderBy(e => e.Begin))
            {
                WriteData(stream, entry.Tensor, entry.Dtype.ElementSize(), chunkBytes);
            }
        });
    }

    sealed record Entry(string Name, Tensor Tensor, SafeTensorsDtype Dtype, long[] Shape, long Begin, long End);

    /// <summary>Validates names and types and assigns each tensor its byte range. Returns entries in the given order.</summary>
    static List<Entry> Plan(IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        var given = new List<(string Name, Tensor Tensor, SafeTensorsDtype Dtype)>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in tensors)
        {
            ArgumentNullException.ThrowIfNull(name, nameof(tensors));
            if (tensor is null)
            {
                throw new ArgumentException($"Tensor '{name}' is null.", nameof(tensors));
            }
            if (name == MetadataKey)
            {
                throw new ArgumentException($"'{MetadataKey}' is reserved by the format and cannot name a tensor.", nameof(tensors));
            }
            if (!names.Add(name))
            {
                throw new ArgumentException($"Tensor name '{name}' appears twice.", nameof(tensors));
            }
            if (!SafeTensorsDtypes.TryFromScalarType(tensor.dtype, out var dtype))
            {
                throw new ArgumentException($"Tensor '{name}' has type {tensor.dtype}, which safetensors cannot store here.", nameof(tensors));
            }
            given.Add((name, tensor, dtype));
        }

        // Largest elements first, then the given order: the data layout of the reference implementation, minus its
        // name sort, which would break the promise that callers control the order.
        var ranges = new Dictionary<string, (long Begin, long End)>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var (name, tensor, dtype) in given.OrderByDescending(g => g.Dtype.ElementSize()))
        {
            long length = checked(tensor.numel() * dtype.ElementSize());
            ranges[name] = (offset, offset + length);
            offset += length;
        }
        return given
            .Select(g => new Entry(g.Name, g.Tensor, g.Dtype, g.Tensor.shape, ranges[g.Name].Begin, ranges[g.Name].End))
            .ToList();
    }

    /// <summary>The header bytes: compact JSON as serde_json writes it, then spaces up to a multiple of 8.</summary>
    static byte[] BuildHeader(List<Entry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        var json = new StringBuilder();
        json.Append('{');
        bool first = true;
        if (metadata is not null)
        {
            AppendString(json, MetadataKey);
            json.Append(":{");
            // Sorted so the bytes do not depend on a dictionary's enumeration order.
            bool firstItem = true;
            foreach (var (key, value) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                ArgumentNullException.ThrowIfNull(value, nameof(metadata));
                if (!firstItem)
                {
                    json.Append(',');
                }
                AppendString(json, key);
                json.Append(':');
                AppendString(json, value);
                firstItem = false;
            }
            json.Append('}');
            first = false;
        }
        foreach (var e in entries)
        {
            if (!first)
            {
                json.Append(',');
            }
            AppendString(json, e.Name);
            json.Append(":{\"dtype\":");
            AppendString(json, e.Dtype.ToString());
            json.Append(",\"shape\":[");
            json.AppendJoin(',', e.Shape.Select(d => d.ToString(CultureInfo.InvariantCulture)));
            json.Append("],\"data_offsets\":[")
                .Append(e.Begin.ToString(CultureInfo.InvariantCulture)).Append(',')
                .Append(e.End.ToString(CultureInfo.InvariantCulture)).Append("]}");
            first = false;
        }
        json.Append('}');

        int length;
        try
        {
            length = StrictUtf8.GetByteCount(json.ToString());
        }
        catch (EncoderFallbackException e)
        {
            throw new ArgumentException("A tensor name or metadata string is not valid Unicode (a lone surrogate).", e);
        }
        int padded = (length + 7) / 8 * 8;
        var header = new byte[padded];
        StrictUtf8.GetBytes(json.ToString(), header);
        header.AsSpan(length).Fill((byte)' ');
        return header;
    }

    /// <summary>A JSON string with serde_json's escaping: quote, backslash and control characters only; other text as UTF-8.</summary>
    static void AppendString(StringBuilder json, string value)
    {
        json.Append('"');
        foreach (char c in value)
        {
            switch (c)
            {
                case '"': json.Append("\\\""); break;
                case '\\': json.Append("\\\\"); break;
                case '\b': json.Append("\\b"); break;
                case '\f': json.Append("\\f"); break;
                case '\n': json.Append("\\n"); break;
                case '\r': json.Append("\\r"); break;
                case '\t': json.Append("\\t"); break;
                case < ' ': json.Append("\\u00").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture)); break;
                default: json.Append(c); break;
            }
        }
        json.Append('"');
    }

    /// <summary>Writes a tensor's elements in row-major order and its own dtype.</summary>
    static void WriteData(Stream stream, Tensor tensor, long elementSize, int chunkBytes)
    {
        long count = tensor.numel();
        if (count == 0)
        {
            return;
        }
        long perChunk = TensorMemory.ElementsPerChunk(chunkBytes, elementSize);
        // Parameters being saved usually require grad; the views taken below are plumbing, not part of any graph.
        using var noGrad = no_grad();
        if (tensor.device_type == DeviceType.CPU && tensor.is_contiguous())
        {
            TensorMemory.ForEachPiece(tensor, perChunk, (bytes, _) => stream.Write(bytes));
            return;
        }

        // A transposed view or a GPU tensor: make a few rows contiguous on the CPU at a time, so the extra memory is about
        // one chunk (one row, if a single row is larger).
        using var rows = tensor.dim() == 0 ? tensor.view(1) : tensor.alias(); // (rows, ...) own handle, same data
        long rowCount = rows.shape[0];
        long rowsPerChunk = Math.Max(1, perChunk / (count / rowCount));
        for (long row = 0; row < rowCount; row += rowsPerChunk)
        {
            using var part = rows.narrow(0, row, Math.Min(rowsPerChunk, rowCount - row));
            using var contiguousPart = part.contiguous();
            using var host = contiguousPart.device_type == DeviceType.CPU
                ? contiguousPart.alias()
                : contiguousPart.to(DeviceType.CPU, copy: true);
            TensorMemory.ForEachPiece(host, perChunk, (bytes, _) => stream.Write(bytes));
        }
    }
}
