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
    /// <summary>1 MiB: far below protobuf's 2 GB limit and gRPC's default 4 MB message cap, large enough to amortise framing.</summary>
    public const int MaxChunkBytes = 1 << 20;

    /// <summary>The dtype a chunk header names: tensors travel encoded but decode to fp32, the dtype adapters train
    /// in.</summary>
    public const string Float32 = "float32";

    /// <summary>Every tensor of <paramref name="tensors"/> in name order, as chunks: what a server encodes once per round
    /// and streams to every client (the chunks wrap the encoded arrays, so writing one copies nothing).</summary>
    public static IReadOnlyList<TensorChunk> EncodeAll(IReadOnlyDictionary<string, Tensor> tensors, TransferEncoding encoding) =>
        tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).SelectMany(kv => Split(kv.Key, kv.Value, encoding)).ToList();

    /// <remarks>Encodes the whole tensor once (one tensor's worth of bytes) and wraps slices of it without copying.</remarks>
    public static IEnumerable<TensorChunk> Split(string name, Tensor tensor, TransferEncoding encoding)
    {
        byte[] bytes = TensorCodec.Encode(tensor, encoding);
        var header = new TensorHeader { Name = name, Dtype = Float32, Encoding = encoding.ToString(), EncodedBytes = bytes.Length };
        header.Shape.AddRange(tensor.shape);
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
}

/// <summary>A chunk stream that breaks the protocol or a limit; the message says what, for the log and the sender.</summary>
public sealed class TransferException(string message) : Exception(message);

/// <summary>
/// Reassembles tensors from <see cref="TensorChunk"/> messages, holding at most one tensor's encoded bytes at a time.
/// Each header is shown to an admission check before its buffer is allocated, so a hostile sender cannot make the
/// receiver allocate for a tensor it would refuse anyway.
/// </summary>
public sealed class TensorAssembler(Func<TensorHeader, string?> admit)
{
    TensorHeader? current;
    byte[]? buffer;
    int filled;

    /// <summary>True while a tensor is partly received.</summary>
    public bool InProgress => current is not null;

    /// <summary>Adds a chunk; returns the tensor it completes, or null.</summary>
    /// <exception cref="TransferException">Out-of-order chunks, a refused header, or more data than announced.</exception>
    public (string Name, Tensor Tensor)? Add(TensorChunk chunk)
    {
        if (chunk.Header is { } header)
        {
            if (current is not null) throw new TransferException($"tensor '{current.Name}' ended after {filled} of {current.EncodedBytes} bytes");
            if (header.EncodedBytes < 0 || header.EncodedBytes > int.MaxValue) throw new TransferException($"tensor '{header.Name}' announces {header.EncodedBytes} bytes");
            if (admit(header) is { } refusal) throw new TransferException(refusal);
            current = header;
            buffer = GC.AllocateUninitializedArray<byte>((int)header.EncodedBytes); // every byte is overwritten before use
            filled = 0;
        }
        else if (current is null) throw new TransferException("a tensor chunk arrived without a header");

        var data = chunk.Data.Span;
        if (filled + data.Length > buffer!.Length)
            throw new TransferException($"tensor '{current!.Name}' sent more than the {current.EncodedBytes} bytes it announced");
        data.CopyTo(buffer.AsSpan(filled));
        filled += data.Length;
        if (filled < buffer.Length) return null;

        var done = current!;
        var bytes = buffer;
        current = null;
        buffer = null;
        try
        {
            return (done.Name, TensorCodec.Decode(bytes, TransferEncoding.Parse(done.Encoding), done.Shape.ToArray()));
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or FormatException)
        {
            throw new TransferException($"tensor '{done.Name}': {e.Message}");
        }
    }

    /// <summary>Throws when the stream ended inside a tensor.</summary>
    public void Finish()
    {
        if (current is not null) throw new TransferException($"stream ended inside tensor '{current.Name}' ({filled} of {current.EncodedBytes} bytes)");
    }
}
