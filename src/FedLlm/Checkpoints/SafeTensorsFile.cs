using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Unicode;
using Microsoft.Win32.SafeHandles;
using FedLlm.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Checkpoints;

/// <summary>
/// A safetensors file opened for reading. <see cref="Open(string)"/> parses and validates the whole header, so a
/// truncated or corrupt file fails there, before any weight is touched; tensor data is then copied on demand from a
/// memory map of the file straight into tensor memory, or viewed in place (<see cref="Map"/>).
/// </summary>
/// <remarks>
/// <para>
/// Format (https://github.com/huggingface/safetensors): an 8-byte little-endian length N, then N bytes of UTF-8 JSON
/// <c>{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, "__metadata__": {"k": "v"}}</c> with
/// offsets relative to the first byte after the header, then the data. As in the reference implementation, the
/// tensors' byte ranges must tile the data exactly: no overlap, no gap, nothing after the last one.
/// </para>
/// <para>
/// Reads use memory maps of their own or positional I/O on one handle, and share only a thread-safe pool of staging
/// buffers, so several threads may read different tensors of one open file at once. <see cref="Dispose"/> must not race with reads.
/// </para>
/// </remarks>
public sealed partial class SafeTensorsFile : IDisposable
{
    // The reference implementation refuses headers over 100 MB. A larger N means a corrupt or non-safetensors file,
    // and checking it first avoids allocating N bytes because of garbage.
    const long MaxHeaderBytes = 100_000_000;
    const string MetadataKey = "__metadata__";

    readonly SafeFileHandle _handle;
    readonly Dictionary<string, SafeTensorInfo> _tensors;
    readonly int _chunkBytes;

    SafeTensorsFile(
        string path,
        SafeFileHandle handle,
        Dictionary<string, SafeTensorInfo> tensors,
        IReadOnlyDictionary<string, string> metadata,
        int chunkBytes)
    {
        Path = path;
        _handle = handle;
        _tensors = tensors;
        Metadata = metadata;
        _chunkBytes = chunkBytes;
    }

    /// <summary>Full path of the file.</summary>
    public string Path { get; }

    /// <summary>Every tensor in the file, by name, in header order.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors => _tensors;

    /// <summary>The header's <c>__metadata__</c> map (Hugging Face writes <c>{"format": "pt"}</c>); empty if absent.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens a file and validates its header against the file's length.</summary>
    /// <exception cref="CheckpointException">
    /// The file is missing, truncated (the message names the first tensor whose data lies past the end), has a header
    /// that is not valid JSON or not valid safetensors, or uses an unsupported dtype.
    /// </exception>
    public static SafeTensorsFile Open(string path) => Open(path, TensorMemory.DefaultChunkBytes);

    /// <summary>As <see cref="Open(string)"/>, with the conversion chunk size set (tests use a tiny one).</summary>
    internal static SafeTensorsFile Open(string path, int chunkBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkBytes);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("safetensors data is little-endian and is read without byte swapping.");
        }
        var fullPath = System.IO.Path.GetFullPath(path);
        SafeFileHandle handle;
        try
        {
            // No FileOptions.RandomAccess: tensors are read front to back, so the kernel's read-ahead is what we want.
            handle = File.OpenHandle(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new CheckpointException($"Safetensors file '{fullPath}' does not exist.", e);
        }
        try
        {
            var (tensors, metadata) = ReadHeader(fullPath, handle);
            return new SafeTensorsFile(fullPath, handle, tensors, metadata, chunkBytes);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Reads a tensor into a new CPU tensor, owned by the caller (and registered on the caller's dispose scope, if any).</summary>
    /// <param name="name">Tensor name.</param>
    /// <param name="dtype">Element type of the result; default: the file's type. Converted as <see cref="ReadInto"/> does.</param>
    /// <exception cref="CheckpointException">The file has no such tensor, or it was truncated after opening.</exception>
    public Tensor Read(string name, ScalarType? dtype = null)
    {
        var info = Find(name);
        var result = empty(info.Shape, dtype ?? info.Dtype.ToScalarType(), CPU);
        try
        {
            Fill(info, result);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Copies a tensor into <paramref name="destination"/>, e.g. a model parameter, converting the element type if the
    /// destination's differs (BF16 on disk into an F32 parameter).
    /// </summary>
    /// <remarks>
    /// Never holds a second full copy of the tensor: the file is memory-mapped (see <see cref="Map"/>) and copied into
    /// the destination 64 MiB at a time, each piece's file pages released once copied. Where it cannot be mapped, the
    /// file is read straight into the destination's memory with equal types, and with different types one chunk (8 MiB)
    /// at a time is read into a small buffer and converted into its slice.
    /// Autograd is off for the copy, so parameters that require grad can be filled in place.
    /// </remarks>
    /// <exception cref="CheckpointException">No such tensor, or the shapes differ (the message gives both).</exception>
    /// <exception cref="ArgumentException">The destination is not a contiguous CPU tensor.</exception>
    public void ReadInto(string name, Tensor destination) => Fill(CheckDestination(name, destination), destination);

    SafeTensorInfo CheckDestination(string name, Tensor destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var info = Find(name);
        if (!destination.shape.AsSpan().SequenceEqual(info.Shape))
        {
            throw new CheckpointException(
                $"Cannot read tensor '{name}' of '{Path}': the file holds shape {SafeTensorInfo.FormatShape(info.Shape)} " +
                $"({info.Dtype}) but the destination has shape {SafeTensorInfo.FormatShape(destination.shape)} ({destination.dtype}).");
        }
        if (destination.device_type != DeviceType.CPU || !destination.is_contiguous())
        {
            throw new ArgumentException(
                $"Cannot read tensor '{name}' of '{Path}' into a {(destination.is_contiguous() ? "" : "non-contiguous ")}" +
                $"{destination.device_type} tensor: ReadInto fills contiguous CPU tensors; read on the CPU, then move it.",
                nameof(destination));
        }
        return info;
    }

    /// <summary>Closes the file and frees the buffers of <see cref="MapFinite"/>.</summary>
    public void Dispose()
    {
        _handle.Dispose();
        DisposeStaging();
    }

    SafeTensorInfo Find(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        if (_tensors.TryGetValue(name, out var info))
        {
            return info;
        }
        throw new CheckpointException(
            $"Tensor '{name}' is not in safetensors file '{Path}' ({_tensors.Count} tensors){SimilarNames(name, _tensors.Keys)}.");
    }

    /// <summary>
    /// A tensor over the file's own bytes for <paramref name="name"/>, without reading or copying them: a private,
    /// copy-on-write memory map of the file (writes to the result never reach the file), owned by the caller.
    /// </summary>
    /// <remarks>
    /// <para>
    /// The pages come straight from the page cache as they are touched, so a warm file costs no read and no fresh memory;
    /// once the result (and every view of it) is disposed the mapping goes, and the pages leave this process's resident
    /// set. Meant for a tensor used once and dropped, such as a weight being quantised: a long-lived tensor over a file
    /// that someone truncates in place would fault (SIGBUS) on its next read, as with any memory-mapped loader.
    /// </para>
    /// <para>
    /// Null when the file cannot be mapped that way: the tensor's data does not start at a multiple of its element size
    /// (the format's writers align it; a hand-made file may not), it has no elements, or the file system refuses the map
    /// (the file was deleted after opening, for example). <see cref="Read"/> and <see cref="ReadInto"/> then read it.
    /// </para>
    /// </remarks>
    /// <exception cref="CheckpointException">No such tensor, or the file is now shorter than its header says.</exception>
    public Tensor? Map(string name) => MapTensor(Find(name));

    Tensor? MapTensor(SafeTensorInfo info)
    {
        long elementSize = info.Dtype.ElementSize();
        if (info.ElementCount == 0 || info.Offset % elementSize != 0)
        {
            return null;
        }
        long end = info.Offset + info.ByteLength;
        // A page of a mapping past the end of the file faults (SIGBUS) rather than failing a read, so refuse a file
        // that shrank since its header was checked; what happens if it shrinks during the copy is the mapping's risk.
        if (RandomAccess.GetLength(_handle) < end)
        {
            throw Truncated(info.Name);
        }
        Tensor file;
        try
        {
            // from_file maps [0, end) privately (MAP_PRIVATE, copy-on-write) as end / elementSize elements of the
            // tensor's type (the offset is a multiple of the element size, so end is too); only the pages this tensor
            // covers are ever touched, and the mapping is released with the last tensor that views it.
            file = from_file(Path, shared: false, size: end / elementSize, dtype: info.Dtype.ToScalarType());
        }
        catch (Exception e) when (e is System.Runtime.InteropServices.ExternalException)
        {
            return null;
        }
        using (file)                                                                       // (end / elementSize,)
        using (var flat = file.narrow(0, info.Offset / elementSize, info.ElementCount))   // (numel,)
        {
            return flat.view(info.Shape);                                                   // info.Shape
        }
    }

    void Fill(SafeTensorInfo info, Tensor destination)
    {
        // Filling a parameter is a load, not a step autograd should record (the in-place copy_ on a leaf that requires
        // grad would even throw).
        using var noGrad = no_grad();
        using (var mapped = MapTensor(info))
        {
            if (mapped is not null)
            {
                CopyMapped(mapped, destination);
                return;
            }
        }
        long elementSize = info.Dtype.ElementSize();
        long perChunk = TensorMemory.ElementsPerChunk(_chunkBytes, elementSize);
        var sourceType = info.Dtype.ToScalarType();
        if (destination.dtype == sourceType)
        {
            TensorMemory.ForEachPiece(destination, perChunk,
                (bytes, first) => ReadExactly(bytes, info.Offset + first * elementSize, info.Name));
            return;
        }
        long count = info.ElementCount;
        if (count == 0)
        {
            return;
        }
        using var buffer = empty(Math.Min(perChunk, count), sourceType, CPU); // (chunk,) in the file's type
        using var flat = destination.view(-1);                                  // (numel,) alias of the destination
        for (long start = 0; start < count; start += perChunk)
        {
            long length = Math.Min(perChunk, count - start);
            using var source = buffer.narrow(0, 0, length);
            ReadExactly(source.bytes, info.Offset + start * elementSize, info.Name);
            using var target = flat.narrow(0, start, length);
            using var copied = target.copy_(source); // converts, e.g. BF16 -> F32, exactly as .to(float32) does
        }
    }

    /// <summary>
    /// Copies a mapped tensor into the destination piece by piece, converting the type if it differs (BF16 -> F32
    /// exactly as .to(float32) does) in libtorch's parallel copy, then releases each piece's file pages (see
    /// <see cref="MappedPages"/>): no read into a buffer first, and no more than one piece of the file resident.
    /// </summary>
    void CopyMapped(Tensor mapped, Tensor destination)
    {
        using var source = mapped.view(-1);     // (numel,) over the mapping
        using var target = destination.view(-1); // (numel,) alias of the destination
        long count = source.numel();
        long perPiece = Math.Max(1, (long)_chunkBytes * MappedPieceChunks / mapped.element_size());
        MappedPages.AdviseHugePages(destination); // fewer, larger page faults when the copy first touches it
        for (long start = 0; start < count; start += perPiece)
        {
            long length = Math.Min(perPiece, count - start);
            using var from = source.narrow(0, start, length);
            using var to = target.narrow(0, start, length);
            using var copied = to.copy_(from);
            MappedPages.Release(from);
        }
    }

    // Pieces of 8 chunks (64 MiB by default): large enough that libtorch's copy splits one over every thread, small
    // enough that the file pages resident at once stay a small fraction of a load's peak.
    const int MappedPieceChunks = 8;

    CheckpointException Truncated(string tensorName) =>
        new($"Safetensors file '{Path}' ended while reading tensor '{tensorName}'; it was truncated after it was opened.");

    void ReadExactly(Span<byte> buffer, long fileOffset, string tensorName)
    {
        if (!TryReadExactly(_handle, buffer, fileOffset))
        {
            throw Truncated(tensorName);
        }
    }

    static bool TryReadExactly(SafeFileHandle handle, Span<byte> buffer, long fileOffset)
    {
        while (!buffer.IsEmpty)
        {
            int read = RandomAccess.Read(handle, buffer, fileOffset);
            if (read == 0)
            {
                return false;
            }
            buffer = buffer[read..];
            fileOffset += read;
        }
        return true;
    }

    /// <summary>Up to three names that differ from <paramref name="name"/> only by a dotted prefix, as a message suffix.</summary>
    /// <remarks>The usual cause of a missing tensor is a prefix mismatch (<c>model.</c>, <c>base_model.model.</c>).</remarks>
    internal static string SimilarNames(string name, IEnumerable<string> names)
    {
        var similar = names
            .Where(n => n.EndsWith("." + name, StringComparison.Ordinal) || name.EndsWith("." + n, StringComparison.Ordinal))
            .Take(3)
            .Select(n => $"'{n}'")
            .ToList();
        return similar.Count == 0 ? "" : "; similar names: " + string.Join(", ", similar);
    }

    static CheckpointException Invalid(string path, string reason, Exception? inner = null) =>
        new($"Safetensors file '{path}' is invalid: {reason}.", inner);

    sealed record Entry(string Name, SafeTensorsDtype Dtype, long[] Shape, long Begin, long End);

    static (Dictionary<string, SafeTensorInfo>, IReadOnlyDictionary<string, string>) ReadHeader(string path, SafeFileHandle handle)
    {
        long fileLength = RandomAccess.GetLength(handle);
        Span<byte> prefix = stackalloc byte[8];
        if (fileLength < 8 || !TryReadExactly(handle, prefix, 0))
        {
            throw Invalid(path, $"it is {fileLength} bytes long, too short for the 8-byte header length; it is truncated or not safetensors");
        }
        ulong declared = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (declared > MaxHeaderBytes)
        {
            throw Invalid(path, $"it declares a {declared}-byte header, over the format's {MaxHeaderBytes}-byte limit; it is corrupt or not safetensors");
        }
        long headerLength = (long)declared;
        long dataLength = fileLength - 8 - headerLength;
        if (dataLength < 0)
        {
            throw Invalid(path, $"it declares a {headerLength}-byte header but only {fileLength - 8} bytes follow; it is truncated");
        }
        var json = new byte[headerLength];
        if (!TryReadExactly(handle, json, 8))
        {
            throw Invalid(path, "it shrank while its header was read");
        }

        // Checked before parsing: JsonDocument accepts invalid UTF-8 inside strings and only fails when a name is read.
        if (!Utf8.IsValid(json))
        {
            throw Invalid(path, $"its {headerLength}-byte header is not valid UTF-8; it is corrupt or not safetensors");
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw Invalid(path, $"its {headerLength}-byte header is not valid JSON ({e.Message})", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw Invalid(path, $"its header is a JSON {root.ValueKind}, not an object");
            }
            var entries = new List<Entry>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            IReadOnlyDictionary<string, string> metadata = new Dictionary<string, string>();
            foreach (var property in root.EnumerateObject())
            {
                // JSON allows repeated keys and parsers disagree on which wins; refuse rather than guess.
                if (!seen.Add(property.Name))
                {
                    throw Invalid(path, $"the header declares '{property.Name}' twice");
                }
                if (property.Name == MetadataKey)
                {
                    metadata = ParseMetadata(path, property.Value);
                }
                else
                {
                    entries.Add(ParseEntry(path, property.Name, property.Value));
                }
            }
            CheckLayout(path, entries, headerLength, dataLength);

            long dataStart = 8 + headerLength;
            var tensors = new Dictionary<string, SafeTensorInfo>(entries.Count, StringComparer.Ordinal);
            foreach (var e in entries)
            {
                tensors.Add(e.Name, new SafeTensorInfo(e.Name, e.Dtype, e.Shape, dataStart + e.Begin, e.End - e.Begin));
            }
            return (tensors, metadata);
        }
    }

    static Dictionary<string, string> ParseMetadata(string path, JsonElement value)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (value.ValueKind == JsonValueKind.Null)
        {
            return metadata;
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Invalid(path, $"its {MetadataKey} is a JSON {value.ValueKind}, not an object of strings");
        }
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw Invalid(path, $"{MetadataKey} entry '{item.Name}' is a JSON {item.Value.ValueKind}; the format allows only strings");
            }
            if (!metadata.TryAdd(item.Name, item.Value.GetString()!))
            {
                throw Invalid(path, $"{MetadataKey} declares '{item.Name}' twice");
            }
        }
        return metadata;
    }

    static Entry ParseEntry(string path, string name, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Invalid(path, $"the header entry for tensor '{name}' is a JSON {value.ValueKind}, not an object");
        }
        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw Invalid(path, $"tensor '{name}' has no string \"dtype\"");
        }
        var dtypeText = dtypeElement.GetString()!;
        if (!SafeTensorsDtypes.TryParse(dtypeText, out var dtype))
        {
            throw Invalid(path,
                $"tensor '{name}' has dtype \"{dtypeText}\", which FedLlm does not read (it reads " +
                string.Join(", ", Enum.GetNames<SafeTensorsDtype>()) + ")");
        }
        var shape = ReadNonNegativeIntegers(path, name, value, "shape", expectedCount: null);
        var offsets = ReadNonNegativeIntegers(path, name, value, "data_offsets", expectedCount: 2);
        long begin = offsets[0], end = offsets[1];
        if (end < begin)
        {
            throw Invalid(path, $"tensor '{name}' has data_offsets [{begin}, {end}], which end before they begin");
        }
        long expected;
        try
        {
            expected = checked(shape.Aggregate(1L, (product, d) => product * d) * dtype.ElementSize());
        }
        catch (OverflowException)
        {
            throw Invalid(path, $"tensor '{name}' has shape {SafeTensorInfo.FormatShape(shape)}, too large to address");
        }
        if (end - begin != expected)
        {
            throw Invalid(path,
                $"tensor '{name}' is {dtype} with shape {SafeTensorInfo.FormatShape(shape)}, which takes {expected} bytes, " +
                $"but its data_offsets [{begin}, {end}] span {end - begin}");
        }
        return new Entry(name, dtype, shape, begin, end);
    }

    static long[] ReadNonNegativeIntegers(string path, string name, JsonElement entry, string field, int? expectedCount)
    {
        if (!entry.TryGetProperty(field, out var array) || array.ValueKind != JsonValueKind.Array
            || (expectedCount is { } count && array.GetArrayLength() != count))
        {
            var what = expectedCount is { } n ? $"an array of {n} integers" : "an array of integers";
            throw Invalid(path, $"tensor '{name}' has no \"{field}\" that is {what}");
        }
        var values = new long[array.GetArrayLength()];
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out var v) || v < 0)
            {
                throw Invalid(path, $"tensor '{name}' has \"{field}\" {item.GetRawText()} at position {i}, not a non-negative integer");
            }
            values[i++] = v;
        }
        return values;
    }

    /// <summary>Checks the byte ranges against the file length and each other, in offset order (the header's order is free).</summary>
    static void CheckLayout(string path, List<Entry> entries, long headerLength, long dataLength)
    {
        var ordered = entries.OrderBy(e => e.Begin).ThenBy(e => e.End).ToList(); // stable, so messages are deterministic
        var pastEnd = ordered.FirstOrDefault(e => e.End > dataLength);
        if (pastEnd is not null)
        {
            throw new CheckpointException(
                $"Safetensors file '{path}' is truncated: tensor '{pastEnd.Name}' needs data bytes [{pastEnd.Begin}, {pastEnd.End}) " +
                $"but only {dataLength} bytes of data follow the {headerLength}-byte header. Re-download or re-save the file.");
        }
        long covered = 0;
        string? previous = null;
        foreach (var e in ordered)
        {
            if (e.Begin < covered)
            {
                throw Invalid(path, $"tensor '{e.Name}' (data_offsets [{e.Begin}, {e.End}]) overlaps tensor '{previous}', which ends at {covered}");
            }
            if (e.Begin > covered)
            {
                throw Invalid(path, $"data bytes [{covered}, {e.Begin}) before tensor '{e.Name}' belong to no tensor; the format allows no gaps");
            }
            covered = e.End;
            previous = e.Name;
        }
        if (covered != dataLength)
        {
            throw Invalid(path, $"its last {dataLength - covered} bytes belong to no tensor (the data is {dataLength} bytes, the tensors cover {covered})");
        }
    }
}
