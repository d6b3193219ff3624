using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using FedLlm.Federation.Transfer;
using FedLlm.Network.Protocol;
using Google.Protobuf;
using static TorchSharp.torch;

namespace FedLlm.Network.Transfer;

/// <summary>
/// Cuts one name-keyed tensor into <see cref="TensorChunk"/> messages of at most <see cref="MaxChunkBytes"/> of data:
/// the first carries the header (name, shape, dtype, encoding, encoded size), the rest only bytes.
/// </summary>
public static class TensorChunks
{
    /// <summary>64 KiB: below .NET's large-object threshold, so the array each received chunk is parsed into is a
    /// short-lived small object whose memory the runtime reuses at once, instead of a large-object-heap array of fresh
    /// pages for every chunk; large enough that framing costs little.</summary>
    public const int MaxChunkBytes = 64 << 10;

    /// <summary>The dtype a chunk header names: tensors travel encoded but decode to fp32, the dtype adapters train
    /// in.</summary>
    public const string Float32 = "float32";

    /// <summary>Every tensor of <paramref name="tensors"/> in name order, as chunks: what a server encodes once per round
    /// and streams to every client (the chunks wrap the encoded arrays, so writing one copies nothing).</summary>
    public static IReadOnlyList<TensorChunk> EncodeAll(IReadOnlyDictionary<string, Tensor> tensors, TransferEncoding encoding) =>
        tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).SelectMany(kv => Split(kv.Key, kv.Value, encoding)).ToList();

    /// <remarks>Encodes the whole tensor once (one tensor's worth of bytes) and wraps slices of it without copying; the
    /// chunks own their bytes, so they may be kept and sent many times.</remarks>
    public static IEnumerable<TensorChunk> Split(string name, Tensor tensor, TransferEncoding encoding)
    {
        byte[] bytes = TensorCodec.Encode(tensor, encoding);
        var header = Header(name, tensor, encoding, bytes.Length);
        if (bytes.Length == 0)
        {
            yield return new TensorChunk { Header = header };
            yield break;
        }
        for (int offset = 0; offset < bytes.Length; offset += MaxChunkBytes)
        {
            var slice = new ReadOnlyMemory<byte>(bytes, offset, Math.Min(MaxChunkBytes, bytes.Length - offset));
            yield return new TensorChunk { Header = offset == 0 ? header : null, Data = UnsafeByteOperations.UnsafeWrap(slice) };
        }
    }

    /// <summary>
    /// The same chunks as <see cref="Split"/>, for a sender that writes each chunk before asking for the next: an
    /// uncompressed encoding is streamed from the native memory of its encoded tensors (for fp32 of an fp32 tensor, the
    /// tensor's own memory) without copying it into a managed payload first.
    /// </summary>
    /// <remarks>A chunk is valid only until the enumeration moves on (its bytes may be freed then) and
    /// <paramref name="tensor"/> must not change meanwhile; gzip encodings fall back to <see cref="Split"/>.</remarks>
    public static IEnumerable<TensorChunk> Stream(string name, Tensor tensor, TransferEncoding encoding)
    {
        if (encoding.Gzip)
        {
            foreach (var chunk in Split(name, tensor, encoding)) yield return chunk;
            yield break;
        }
        var header = Header(name, tensor, encoding, TensorCodec.EncodedLength(encoding, tensor.numel()));
        if (encoding.Precision == TransferPrecision.BFloat16 && tensor.dtype == ScalarType.Float32 && tensor.device_type == TorchSharp.DeviceType.CPU
            && tensor.is_contiguous() && tensor.numel() > 0)
        {
            foreach (var chunk in NarrowedToBFloat16(header, tensor)) yield return chunk;
            yield break;
        }
        var segments = TensorCodec.EncodeSegments(tensor, encoding);
        try
        {
            foreach (var chunk in OverSegments(header, segments)) yield return chunk;
        }
        finally
        {
            foreach (var segment in segments) segment.Dispose();
        }
    }

    /// <summary>bf16 chunks of a contiguous fp32 tensor, each narrowed into one reused buffer as it is asked for: an
    /// upload in bf16 allocates no bf16 copy of the adapter (whose fresh pages cost more than the narrowing). The
    /// rounding is libtorch's (nearest, ties to even), so every finite or infinite value gets the bytes of <see
    /// cref="TensorCodec.Encode"/>; a NaN stays a NaN (libtorch's own NaN bytes differ between its scalar and vector
    /// paths).</summary>
    static IEnumerable<TensorChunk> NarrowedToBFloat16(TensorHeader header, Tensor tensor)
    {
        var memory = new TensorMemory(tensor);
        var buffer = ArrayPool<byte>.Shared.Rent(MaxChunkBytes);
        try
        {
            for (int offset = 0; offset < memory.Length; offset += 2 * MaxChunkBytes)
            {
                int floats = Math.Min(2 * MaxChunkBytes, memory.Length - offset) / 4;
                NarrowBFloat16(MemoryMarshal.Cast<byte, uint>(memory.GetSpan().Slice(offset, floats * 4)), MemoryMarshal.Cast<byte, ushort>(buffer.AsSpan(0, floats * 2)));
                yield return new TensorChunk { Header = offset == 0 ? header : null, Data = UnsafeByteOperations.UnsafeWrap(buffer.AsMemory(0, floats * 2)) };
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    static void NarrowBFloat16(ReadOnlySpan<uint> bits, Span<ushort> into)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var exponentMask = new Vector<uint>(0x7F800000u);
            var mantissaMask = new Vector<uint>(0x007FFFFFu);
            var bias = new Vector<uint>(0x7FFFu);
            var one = new Vector<uint>(1u);
            var nan = new Vector<uint>(0x7FC0u);
            for (; i <= bits.Length - 2 * Vector<uint>.Count; i += 2 * Vector<uint>.Count)
            {
                var low = Round(new Vector<uint>(bits[i..]));
                var high = Round(new Vector<uint>(bits[(i + Vector<uint>.Count)..]));
                Vector.Narrow(low, high).CopyTo(into[i..]);
            }
            Vector<uint> Round(Vector<uint> x)
            {
                var rounded = (x + bias + ((x >> 16) & one)) >> 16;
                var isNaN = Vector.Equals(x & exponentMask, exponentMask) & ~Vector.Equals(x & mantissaMask, Vector<uint>.Zero);
                return Vector.ConditionalSelect(isNaN, nan, rounded);
            }
        }
        for (; i < bits.Length; i++)
        {
            uint x = bits[i];
            into[i] = (x & 0x7F800000u) == 0x7F800000u && (x & 0x007FFFFFu) != 0 ? (ushort)0x7FC0 : (ushort)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
        }
    }

    /// <summary>Chunks over the native memory of an uncompressed payload's segments (<see
    /// cref="TensorCodec.EncodeSegments"/>), in order, the first carrying <paramref name="header"/>; a header-only chunk
    /// for an empty payload. The chunks wrap the segments' memory: they are valid while the segments live.</summary>
    internal static IEnumerable<TensorChunk> OverSegments(TensorHeader header, IReadOnlyList<Tensor> segments)
    {
        if (header.EncodedBytes == 0)
        {
            yield return new TensorChunk { Header = header };
            yield break;
        }
        bool first = true;
        foreach (var segment in segments)
        {
            var memory = new TensorMemory(segment);
            for (int offset = 0; offset < memory.Length; offset += MaxChunkBytes)
            {
                var slice = memory.Memory.Slice(offset, Math.Min(MaxChunkBytes, memory.Length - offset));
                yield return new TensorChunk { Header = first ? header : null, Data = UnsafeByteOperations.UnsafeWrap(slice) };
                first = false;
            }
        }
    }

    internal static TensorHeader Header(string name, Tensor tensor, TransferEncoding encoding, long encodedBytes)
    {
        var header = new TensorHeader { Name = name, Dtype = Float32, Encoding = encoding.ToString(), EncodedBytes = encodedBytes };
        header.Shape.AddRange(tensor.shape);
        return header;
    }
}

/// <summary>
/// A tensor set encoded once and served many times (a round's global adapter, to every client): its chunks in name
/// order, over the encoded memory. An uncompressed encoding keeps its payload in native tensors (for fp32 of an fp32
/// tensor, the source tensor's own memory, so nothing is copied or allocated); gzip keeps managed arrays.
/// </summary>
/// <remarks>The source tensors must outlive this object and not change meanwhile; disposing it frees the encoded
/// copies (not the sources), after which its chunks must not be read.</remarks>
public sealed class EncodedTensors : IDisposable
{
    readonly List<Tensor> owned = new();
    readonly List<Tensor> reusable = new();
    readonly ReceivePool? pool;

    /// <summary>Every tensor's chunks, in name order: the first of each carries its header.</summary>
    public IReadOnlyList<TensorChunk> Chunks { get; }

    /// <summary>Encodes <paramref name="tensors"/> with <paramref name="encoding"/>.</summary>
    /// <param name="tensors">What to encode (not changed, and for fp32 shared: it must outlive this).</param>
    /// <param name="encoding">The transfer encoding.</param>
    /// <param name="pool">Where a bf16 or fp16 encoding takes its tensors from and gives them back to when disposed (a
    /// server encodes every round's global: the last round's memory instead of fresh pages); null = allocate and
    /// free.</param>
    public EncodedTensors(IReadOnlyDictionary<string, Tensor> tensors, TransferEncoding encoding, ReceivePool? pool = null)
    {
        this.pool = pool;
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(encoding);
        var chunks = new List<TensorChunk>();
        try
        {
            foreach (var (name, tensor) in tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                if (encoding.Gzip)
                {
                    chunks.AddRange(TensorChunks.Split(name, tensor, encoding));
                    continue;
                }
                var header = TensorChunks.Header(name, tensor, encoding, TensorCodec.EncodedLength(encoding, tensor.numel()));
                if (pool is not null && NarrowedInPlace(encoding) is { } dtype && tensor.dtype == ScalarType.Float32 && tensor.numel() > 0)
                {
                    // The same conversion EncodeSegments makes (to() is a copy_ into a new tensor), into kept memory.
                    var target = pool.Rent(tensor.shape, dtype) ?? empty(tensor.shape, dtype);
                    reusable.Add(target);
                    using (no_grad()) target.copy_(tensor);
                    chunks.AddRange(TensorChunks.OverSegments(header, [target]));
                    continue;
                }
                var segments = TensorCodec.EncodeSegments(tensor, encoding);
                owned.AddRange(segments);
                chunks.AddRange(TensorChunks.OverSegments(header, segments));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
        Chunks = chunks;
    }

    static ScalarType? NarrowedInPlace(TransferEncoding encoding) => encoding.Gzip ? null : encoding.Precision switch
    {
        TransferPrecision.BFloat16 => ScalarType.BFloat16,
        TransferPrecision.Float16 => ScalarType.Float16,
        _ => null,
    };

    /// <summary>Frees the encoded copies (gives the pool's back to it).</summary>
    public void Dispose()
    {
        foreach (var tensor in owned) tensor.Dispose();
        owned.Clear();
        pool?.Return(reusable);
        reusable.Clear();
    }
}

/// <summary>A chunk stream that breaks the protocol or a limit; the message says what, for the log and the sender.</summary>
public sealed class TransferException(string message) : Exception(message);

/// <summary>
/// Reassembles tensors from <see cref="TensorChunk"/> messages, holding at most one tensor's encoded bytes at a time.
/// Each header is shown to an admission check before its buffer is allocated, so a hostile sender cannot make the
/// receiver allocate for a tensor it would refuse anyway.
/// </summary>
public sealed class TensorAssembler(Func<TensorHeader, string?> admit, Func<TensorHeader, Tensor?>? destination = null) : IDisposable
{
    TensorHeader? current;
    StreamingDecoder? decoder;

    /// <summary>True while a tensor is partly received.</summary>
    public bool InProgress => current is not null;

    /// <summary>Adds a chunk; returns the tensor it completes, or null.</summary>
    /// <exception cref="TransferException">Out-of-order chunks, a refused header, a length the shape cannot have, or more
    /// data than announced.</exception>
    public (string Name, Tensor Tensor)? Add(TensorChunk chunk)
    {
        if (chunk.Header is { } header)
        {
            if (current is not null) throw new TransferException($"tensor '{current.Name}' ended after {decoder!.Written} of {current.EncodedBytes} bytes");
            if (header.EncodedBytes < 0 || header.EncodedBytes > int.MaxValue) throw new TransferException($"tensor '{header.Name}' announces {header.EncodedBytes} bytes");
            if (admit(header) is { } refusal) throw new TransferException(refusal);
            decoder = Decoder(header, destination);
            current = header;
        }
        else if (current is null) throw new TransferException("a tensor chunk arrived without a header");

        var data = chunk.Data.Span;
        if (data.Length > decoder!.Length - decoder.Written)
            throw new TransferException($"tensor '{current!.Name}' sent more than the {current.EncodedBytes} bytes it announced");
        decoder.Write(data);
        if (!decoder.Complete) return null;

        var done = current!;
        using var finished = decoder;
        current = null;
        decoder = null;
        return (done.Name, Finish(done.Name, finished));
    }

    /// <summary>The tensor a complete payload decodes to (the caller owns it).</summary>
    /// <exception cref="TransferException">A payload that does not decode (corrupt gzip, ...), naming the tensor.</exception>
    public static Tensor Finish(string name, StreamingDecoder decoder)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        try
        {
            return decoder.Finish();
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or FormatException)
        {
            throw new TransferException($"tensor '{name}': {e.Message}");
        }
    }

    /// <summary>A decoder for the tensor <paramref name="header"/> announces, once its encoding and length fit its
    /// shape.</summary>
    /// <exception cref="TransferException">An unknown encoding or a length the shape cannot have, naming the tensor.</exception>
    /// <param name="header">The tensor's header, already admitted.</param>
    /// <param name="destination">Where an uncompressed fp32, bf16 or fp16 tensor of this header's shape may be decoded
    /// into, as float32 (e.g. <c>ReceivePool.Rent</c>); asked only for such a tensor, and what it gives belongs to the
    /// decoder.</param>
    public static StreamingDecoder Decoder(TensorHeader header, Func<TensorHeader, Tensor?>? destination = null)
    {
        ArgumentNullException.ThrowIfNull(header);
        if (header.EncodedBytes < 0 || header.EncodedBytes > int.MaxValue) throw new TransferException($"tensor '{header.Name}' announces {header.EncodedBytes} bytes");
        Tensor? target = null;
        try
        {
            var encoding = TransferEncoding.Parse(header.Encoding);
            if (destination is not null && StreamingDecoder.DecodesInto(encoding) && header.Shape.Count > 0 && header.Shape.All(d => d > 0)
                && header.EncodedBytes == TensorCodec.EncodedLength(encoding, header.Shape.Aggregate(1L, (a, d) => a * d)))
                target = destination(header);
            return new StreamingDecoder(encoding, header.Shape.ToArray(), header.EncodedBytes, target);
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or FormatException or OverflowException)
        {
            target?.Dispose(); // the decoder owns a destination only once constructed
            throw new TransferException($"tensor '{header.Name}': {e.Message}");
        }
    }

    /// <summary>Throws when the stream ended inside a tensor.</summary>
    public void Finish()
    {
        if (current is not null) throw new TransferException($"stream ended inside tensor '{current.Name}' ({decoder!.Written} of {current.EncodedBytes} bytes)");
    }

    /// <summary>Frees a partly received tensor.</summary>
    public void Dispose()
    {
        decoder?.Dispose();
        decoder = null;
        current = null;
    }
}
