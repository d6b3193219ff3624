using System.Buffers.Binary;
using System.Net.Security;
using FedLlm.Federation.Transfer;
using FedLlm.Network.Protocol;
using Google.Protobuf;
using static TorchSharp.torch;

namespace FedLlm.Network.Transfer;

/// <summary>
/// The framing of the bulk channel (federation.proto, "The bulk channel"): length-prefixed messages, and each tensor's
/// bytes raw after its <see cref="BulkTensor"/> frame, read straight into the tensor's memory and written straight from
/// the encoded bytes.
/// </summary>
/// <remarks>
/// Why a channel beside gRPC: on a large adapter the gRPC path spends most of its CPU outside the transfer itself —
/// HTTP/2 framing and flow control, and a protobuf message (parsed into a fresh array) per chunk on both sides. Over
/// one TLS connection per transfer with the bytes raw, what is left is the encryption and one copy on each side.
/// </remarks>
public static class BulkFrames
{
    /// <summary>The TLS application protocol (ALPN) that routes a connection on the federation port to the bulk
    /// channel instead of HTTP/2.</summary>
    public static readonly SslApplicationProtocol ApplicationProtocol = new("fedllm-bulk/2");

    /// <summary>The first bytes of every bulk connection (after TLS, if any). On an --insecure (h2c) port, where no
    /// ALPN exists, they alone tell a bulk connection from HTTP/2, whose preface is as long.</summary>
    public static ReadOnlySpan<byte> Preface => "FEDLLM-BULK/2\n"u8;

    /// <summary>The largest message frame accepted (headers and replies only; tensor bytes are not frames).</summary>
    public const int MaxMessageBytes = 1 << 20;

    /// <summary>How much of a tensor is read or written per call: large enough that TLS records and system calls cost
    /// little, small enough that a heartbeat check runs often.</summary>
    public const int IoBytes = 1 << 20;

    /// <summary>Writes one message frame.</summary>
    public static async ValueTask WriteMessageAsync(Stream stream, IMessage message, CancellationToken cancellationToken)
    {
        int size = message.CalculateSize();
        var frame = new byte[4 + size];
        BinaryPrimitives.WriteInt32LittleEndian(frame, size);
        message.WriteTo(frame.AsSpan(4));
        await stream.WriteAsync(frame, cancellationToken);
    }

    /// <summary>Writes the frame that ends a tensor sequence.</summary>
    public static ValueTask WriteEndAsync(Stream stream, CancellationToken cancellationToken) => stream.WriteAsync(new byte[4], cancellationToken);

    /// <summary>Reads one message frame; null for the end frame.</summary>
    /// <exception cref="EndOfStreamException">The connection ended inside or before the frame.</exception>
    /// <exception cref="TransferException">A frame longer than <see cref="MaxMessageBytes"/>, or one that does not
    /// parse.</exception>
    public static async ValueTask<T?> ReadMessageAsync<T>(Stream stream, MessageParser<T> parser, CancellationToken cancellationToken) where T : class, IMessage<T>
    {
        var prefix = new byte[4];
        await stream.ReadExactlyAsync(prefix, cancellationToken);
        int size = BinaryPrimitives.ReadInt32LittleEndian(prefix);
        if (size == 0) return null;
        if (size < 0 || size > MaxMessageBytes) throw new TransferException($"a bulk frame announces {size} bytes (at most {MaxMessageBytes})");
        var body = new byte[size];
        await stream.ReadExactlyAsync(body, cancellationToken);
        try
        {
            return parser.ParseFrom(body);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new TransferException($"a bulk frame is not a {typeof(T).Name}: {e.Message}");
        }
    }

    /// <summary>Reads the connection's preface.</summary>
    /// <exception cref="TransferException">The connection opened with other bytes.</exception>
    public static async ValueTask ReadPrefaceAsync(Stream stream, CancellationToken cancellationToken)
    {
        var got = new byte[Preface.Length];
        await stream.ReadExactlyAsync(got, cancellationToken);
        if (!got.AsSpan().SequenceEqual(Preface)) throw new TransferException("the connection did not open with the bulk channel's preface");
    }

    /// <summary>Writes tensors given as chunks (<see cref="TensorChunks.Split"/> or <see cref="TensorChunks.Stream"/>):
    /// a <see cref="BulkTensor"/> frame where a chunk carries a header, then every chunk's bytes as they are.</summary>
    /// <returns>The bytes written.</returns>
    public static async Task<long> WriteTensorsAsync(Stream stream, IEnumerable<TensorChunk> chunks, string tensorSet, Action? progress,
        CancellationToken cancellationToken)
    {
        long written = 0;
        foreach (var chunk in chunks)
        {
            if (chunk.Header is { } header)
            {
                var frame = new BulkTensor { TensorSet = tensorSet, Header = header };
                await WriteMessageAsync(stream, frame, cancellationToken);
                written += 4 + frame.CalculateSize();
            }
            if (!chunk.Data.IsEmpty)
            {
                await stream.WriteAsync(chunk.Data.Memory, cancellationToken);
                written += chunk.Data.Length;
            }
            progress?.Invoke();
        }
        return written;
    }

    /// <summary>Reads a tensor's <see cref="StreamingDecoder.Length"/> payload bytes straight into its decoder.</summary>
    /// <exception cref="EndOfStreamException">The connection ended inside the tensor.</exception>
    public static async Task ReadPayloadAsync(Stream stream, StreamingDecoder decoder, Action? progress, CancellationToken cancellationToken)
    {
        while (!decoder.Complete)
        {
            var buffer = decoder.NextBuffer();
            if (buffer.Length > IoBytes) buffer = buffer[..IoBytes];
            int read = await stream.ReadAsync(buffer, cancellationToken);
            if (read == 0) throw new EndOfStreamException($"the connection ended after {decoder.Written} of {decoder.Length} bytes of a tensor");
            decoder.Advance(read);
            progress?.Invoke();
        }
    }

    /// <summary>Reads tensor frames and their payloads until the end frame: what a fetch returns. Each header is shown to
    /// <paramref name="admit"/> before anything is allocated for it.</summary>
    /// <returns>The tensors by name (the caller owns them) and the bytes read.</returns>
    /// <exception cref="TransferException">A refused header, a tensor sent twice or in another set, a payload that does
    /// not decode.</exception>
    /// <param name="stream">The connection, positioned at the first tensor frame.</param>
    /// <param name="admit">Null to accept a header, else why not.</param>
    /// <param name="progress">Called after every read, e.g. to keep a heartbeat alive; may be null.</param>
    /// <param name="cancellationToken">Stops the transfer.</param>
    /// <param name="destination">Where an fp32 tensor may be decoded into (<see cref="TensorAssembler.Decoder"/>);
    /// null = new tensors.</param>
    public static async Task<(Dictionary<string, Tensor> Tensors, long Bytes)> ReadTensorsAsync(Stream stream, Func<TensorHeader, string?> admit, Action? progress,
        CancellationToken cancellationToken, Func<TensorHeader, Tensor?>? destination = null)
    {
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        long bytes = 0;
        try
        {
            while (await ReadMessageAsync(stream, BulkTensor.Parser, cancellationToken) is { } frame)
            {
                bytes += 4 + frame.CalculateSize();
                if (frame.Header is not { } header) throw new TransferException("a tensor frame without a header");
                if (frame.TensorSet.Length > 0) throw new TransferException($"tensor '{header.Name}' names tensor set '{frame.TensorSet}' in a fetch");
                if (tensors.ContainsKey(header.Name)) throw new TransferException($"tensor '{header.Name}' sent twice");
                if (admit(header) is { } refusal) throw new TransferException(refusal);
                using var decoder = TensorAssembler.Decoder(header, destination);
                await ReadPayloadAsync(stream, decoder, progress, cancellationToken);
                bytes += decoder.Length;
                tensors[header.Name] = TensorAssembler.Finish(header.Name, decoder).DetachFromDisposeScope();
            }
            bytes += 4;
            return (tensors, bytes);
        }
        catch
        {
            FedLlm.Federation.AdapterTensors.Dispose(tensors);
            throw;
        }
    }
}
