using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using static TorchSharp.torch;

namespace FedLlm.Export;

/// <summary>
/// Writes a GGUF v3 file (the format llama.cpp loads): a header, typed key/value metadata, tensor descriptions, then
/// the tensor data, each tensor starting at a multiple of <see cref="Alignment"/> bytes.
/// </summary>
/// <remarks>
/// <para>
/// Layout, all little-endian: "GGUF", version u32, tensor count u64, metadata count u64; each metadata entry is a
/// string key, a u32 value type and the value (strings are a u64 byte length and UTF-8 bytes; arrays an element type,
/// a u64 count and the elements); each tensor description is its name, u32 dimension count, the dimensions innermost
/// first (ggml's ne[0] is the row length, i.e. PyTorch's last axis), u32 ggml type and the u64 offset of its data
/// from the start of the data section. The data section starts at the next multiple of the alignment.
/// </para>
/// <para>
/// Tensors are converted (to fp16 or Q8_0) one at a time as they are written, so the file costs at most one tensor's
/// float32 copy beyond the model itself. The file is written under a temporary name and renamed when complete.
/// </para>
/// </remarks>
public sealed class GgufWriter
{
    /// <summary>The GGUF format version written (3).</summary>
    public const uint Version = 3;

    /// <summary>GGUF_DEFAULT_ALIGNMENT; written files do not set general.alignment, so readers assume it.</summary>
    public const int Alignment = 32;

    enum ValueType : uint { UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12 }

    sealed record Entry(string Key, ValueType Type, object Value, ValueType ElementType = ValueType.UInt8);

    sealed record TensorEntry(string Name, Tensor Tensor, long[] Shape, GgmlType Type);

    readonly List<Entry> metadata = new();
    readonly List<TensorEntry> tensors = new();
    readonly HashSet<string> keys = new(StringComparer.Ordinal);
    readonly HashSet<string> tensorNames = new(StringComparer.Ordinal);

    /// <summary>Sets metadata <paramref name="key"/> to a UTF-8 string.</summary>
    /// <exception cref="ArgumentException">The key is already set (so for every Add method).</exception>
    public void AddString(string key, string value) => Add(new Entry(key, ValueType.String, value));

    /// <summary>Sets metadata <paramref name="key"/> to a uint32.</summary>
    public void AddUInt32(string key, uint value) => Add(new Entry(key, ValueType.UInt32, value));

    /// <summary>Sets metadata <paramref name="key"/> to a float32.</summary>
    public void AddFloat32(string key, float value) => Add(new Entry(key, ValueType.Float32, value));

    /// <summary>Sets metadata <paramref name="key"/> to a bool.</summary>
    public void AddBool(string key, bool value) => Add(new Entry(key, ValueType.Bool, value));

    /// <summary>Sets metadata <paramref name="key"/> to an array of strings.</summary>
    public void AddStrings(string key, IReadOnlyList<string> values) => Add(new Entry(key, ValueType.Array, values, ValueType.String));

    /// <summary>Sets metadata <paramref name="key"/> to an array of int32.</summary>
    public void AddInt32s(string key, IReadOnlyList<int> values) => Add(new Entry(key, ValueType.Array, values, ValueType.Int32));

    /// <summary>Sets metadata <paramref name="key"/> to an array of float32.</summary>
    public void AddFloat32s(string key, IReadOnlyList<float> values) => Add(new Entry(key, ValueType.Array, values, ValueType.Float32));

    void Add(Entry entry)
    {
        if (!keys.Add(entry.Key)) throw new ArgumentException($"metadata key '{entry.Key}' is set twice");
        metadata.Add(entry);
    }

    /// <summary>
    /// Adds a floating-point tensor (any dtype, any device) to be stored as <paramref name="type"/>. The tensor is
    /// read when <see cref="Write"/> runs, so it must stay alive until then.
    /// </summary>
    public void AddTensor(string name, Tensor tensor, GgmlType type)
    {
        if (!tensorNames.Add(name)) throw new ArgumentException($"tensor '{name}' is added twice");
        if (tensor.dim() is < 1 or > 4) throw new ArgumentException($"tensor '{name}': GGUF holds 1 to 4 dimensions, got {tensor.dim()}");
        if (tensor.shape[^1] % type.BlockSize() != 0)
            throw new ArgumentException($"tensor '{name}': rows of {tensor.shape[^1]} are not a multiple of {type}'s block of {type.BlockSize()}");
        tensors.Add(new TensorEntry(name, tensor, tensor.shape, type));
    }

    /// <summary>Writes the file.</summary>
    public void Write(string path)
    {
        Io.AtomicFile.Write(path, stream =>
        {
            using var output = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            output.Write(Encoding.ASCII.GetBytes("GGUF"));
            output.Write(Version);
            output.Write((ulong)tensors.Count);
            output.Write((ulong)metadata.Count);
            foreach (var entry in metadata)
            {
                WriteString(output, entry.Key);
                output.Write((uint)entry.Type);
                WriteValue(output, entry);
            }
            long offset = 0;
            foreach (var t in tensors)
            {
                WriteString(output, t.Name);
                output.Write((uint)t.Shape.Length);
                foreach (long dimension in t.Shape.Reverse()) output.Write((ulong)dimension); // ne[0] = innermost
                output.Write((uint)t.Type);
                output.Write((ulong)offset);
                offset += Padded(t.Type.ByteCount(t.Tensor.numel()));
            }
            output.Flush();
            Pad(stream);
            foreach (var t in tensors)
            {
                WriteTensorData(stream, t);
                Pad(stream);
            }
        });
    }

    static long Padded(long bytes) => (bytes + Alignment - 1) / Alignment * Alignment;

    static void Pad(Stream stream)
    {
        long padding = Padded(stream.Position) - stream.Position;
        for (long i = 0; i < padding; i++) stream.WriteByte(0);
    }

    static void WriteString(BinaryWriter output, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        output.Write((ulong)bytes.Length);
        output.Write(bytes);
    }

    static void WriteValue(BinaryWriter output, Entry entry)
    {
        switch (entry.Value)
        {
            case string s: WriteString(output, s); break;
            case uint u: output.Write(u); break;
            case float f: output.Write(f); break;
            case bool b: output.Write((byte)(b ? 1 : 0)); break;
            case IReadOnlyList<string> strings:
                output.Write((uint)ValueType.String);
                output.Write((ulong)strings.Count);
                foreach (var s in strings) WriteString(output, s);
                break;
            case IReadOnlyList<int> ints:
                output.Write((uint)ValueType.Int32);
                output.Write((ulong)ints.Count);
                foreach (var i in ints) output.Write(i);
                break;
            case IReadOnlyList<float> floats:
                output.Write((uint)ValueType.Float32);
                output.Write((ulong)floats.Count);
                foreach (var f in floats) output.Write(f);
                break;
            default: throw new InvalidOperationException($"metadata '{entry.Key}' has an unsupported value {entry.Value.GetType().Name}");
        }
    }

    /// <summary>Rows per piece converted at once: about 4M weights, a whole number of rows.</summary>
    const long PieceElements = 1 << 22;

    static void WriteTensorData(Stream stream, TensorEntry t)
    {
        using var noGrad = no_grad();
        long rowLength = t.Shape[^1];
        using var rows = t.Tensor.detach().reshape(-1, rowLength);                     // (rows, ne0)
        long rowCount = rows.shape[0];
        long rowsPerPiece = Math.Max(1, PieceElements / rowLength);
        for (long row = 0; row < rowCount; row += rowsPerPiece)
        {
            using var piece = rows.narrow(0, row, Math.Min(rowsPerPiece, rowCount - row));
            using var host = piece.to(ScalarType.Float32, CPU).contiguous();
            var values = MemoryMarshal.Cast<byte, float>(host.bytes);
            var bytes = new byte[t.Type.ByteCount(values.Length)];
            switch (t.Type)
            {
                case GgmlType.F32: MemoryMarshal.AsBytes(values).CopyTo(bytes); break;
                case GgmlType.F16:
                    for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(2 * i), (Half)values[i]);
                    break;
                case GgmlType.Q8_0: Q80.Quantize(values, bytes); break;
                default: throw new InvalidOperationException($"cannot write {t.Type}");
            }
            stream.Write(bytes);
        }
    }
}
