using System.Buffers;
using System.Runtime.InteropServices;
using FedLlm.Runtime;
using static TorchSharp.torch;

namespace FedLlm.Federation.Transfer;

/// <summary>
/// Decodes one tensor whose payload (<see cref="TensorCodec"/>'s layout) arrives in pieces. An uncompressed payload is
/// written straight into the native memory of the tensors it decodes from (for fp32, the result itself), so receiving
/// costs one copy and no managed buffer the size of the tensor; a gzip payload is gathered in a pooled buffer and
/// inflated at the end.
/// </summary>
/// <remarks>
/// Why: on a large adapter every fresh managed buffer is memory the kernel has to fault in and zero page by page, and a
/// receiver that gathered each tensor's bytes and then copied them into a tensor paid for twice the adapter's size in
/// new pages per transfer. The announced length is checked against the shape before anything is allocated.
/// </remarks>
public sealed class StreamingDecoder : IDisposable
{
    readonly TransferEncoding encoding;
    readonly long[] shape;
    readonly Tensor[] segments; // uncompressed: the layout's parts in order (values, or int8's scales then codes)
    byte[]? gathered; // gzip: the compressed payload, rented
    int segment; // uncompressed: the part the next byte goes to
    int segmentFilled;
    bool handedOver; // fp32, or bf16/fp16 into a destination: the result, which the caller now owns
    // bf16/fp16 into an fp32 destination: received bytes pass through a small rented staging buffer and are widened
    // into the destination as they arrive, so no 2-byte tensor and no new fp32 tensor is allocated.
    readonly Tensor? widened;
    readonly TensorMemory? widenedMemory;
    byte[]? staging;
    int carry; // a half element's first byte, kept at the start of staging for the next read
    long convertedElements;

    /// <summary>Bytes of the staging buffer that widens bf16/fp16 into a destination (even, so pieces end on elements
    /// unless a read splits one).</summary>
    public const int StagingBytes = 1 << 20;

    /// <summary>Bytes of payload this decoder expects in all.</summary>
    public long Length { get; }

    /// <summary>Bytes written so far.</summary>
    public long Written { get; private set; }

    /// <summary>True once <see cref="Length"/> bytes have been written.</summary>
    public bool Complete => Written == Length;

    /// <summary>Prepares to receive a payload of <paramref name="payloadBytes"/> for a float32 tensor of <paramref name="shape"/>.</summary>
    /// <exception cref="InvalidDataException">The length cannot be this encoding of this shape: an uncompressed payload must
    /// measure exactly what the shape needs, a gzip payload at most an eighth more than that.</exception>
    /// <param name="encoding">The payload's transfer encoding.</param>
    /// <param name="shape">The decoded tensor's shape.</param>
    /// <param name="payloadBytes">The payload's announced length.</param>
    /// <param name="destination">For an uncompressed fp32, bf16 or fp16 payload: a contiguous float32 CPU tensor of
    /// <paramref name="shape"/> to decode into instead of a new one (it becomes the result; the decoder owns it once
    /// constructed and frees it if the payload never completes); null = a new tensor.</param>
    /// <exception cref="ArgumentException">A destination for another encoding, shape or dtype (the caller still owns
    /// it).</exception>
    public StreamingDecoder(TransferEncoding encoding, long[] shape, long payloadBytes, Tensor? destination = null)
    {
        ArgumentNullException.ThrowIfNull(encoding);
        ArgumentNullException.ThrowIfNull(shape);
        TensorCodec.RequireLittleEndian();
        this.encoding = encoding;
        this.shape = shape;
        if (destination is not null)
        {
            bool fits = destination.dtype == ScalarType.Float32 && destination.device_type == TorchSharp.DeviceType.CPU && destination.is_contiguous()
                && destination.shape.SequenceEqual(shape);
            if (!fits)
                throw new ArgumentException($"the destination ({destination.dtype}, [{string.Join(", ", destination.shape)}]) is not a contiguous float32 CPU tensor of shape {TensorCodec.FormatShape(shape)}", nameof(destination));
            if (!DecodesInto(encoding)) throw new ArgumentException($"only an uncompressed fp32, bf16 or fp16 payload decodes into a destination, not {encoding}", nameof(destination));
        }
        long count = TensorCodec.ElementCount(shape);
        long rawLength = TensorCodec.EncodedLength(encoding, count);
        if (rawLength > Array.MaxLength)
            throw new InvalidDataException($"shape {TensorCodec.FormatShape(shape)} as {encoding} needs {rawLength} bytes, more than one payload holds");
        Length = payloadBytes;
        if (encoding.Gzip)
        {
            if (payloadBytes < 0 || payloadBytes > TensorCodec.MaxGzipLength(rawLength))
                throw new InvalidDataException($"a gzip payload of {payloadBytes} bytes cannot be {encoding} of shape {TensorCodec.FormatShape(shape)} " +
                    $"({rawLength} bytes uncompressed)");
            gathered = ArrayPool<byte>.Shared.Rent((int)Math.Max(1, payloadBytes));
            segments = [];
            return;
        }
        if (payloadBytes != rawLength)
            throw new InvalidDataException($"payload has {payloadBytes} bytes, but {encoding} of shape {TensorCodec.FormatShape(shape)} " +
                $"({count} elements) needs exactly {rawLength}; it is truncated, padded, or was encoded differently");
        if (destination is not null && encoding.Precision != TransferPrecision.Float32 && count > 0)
        {
            widened = destination;
            widenedMemory = new TensorMemory(destination);
            staging = ArrayPool<byte>.Shared.Rent(StagingBytes);
            segments = [];
            return;
        }
        segments = count == 0 ? [] : encoding.Precision switch
        {
            TransferPrecision.Float32 => [destination ?? empty(shape, ScalarType.Float32)],
            TransferPrecision.BFloat16 => [empty(shape, ScalarType.BFloat16)],
            TransferPrecision.Float16 => [empty(shape, ScalarType.Float16)],
            TransferPrecision.Int8Blockwise => [empty([TensorCodec.BlockCount(count, encoding.BlockSize)], ScalarType.Float32), empty([count], ScalarType.Int8)],
            _ => throw new InvalidDataException($"unknown precision {encoding.Precision}"),
        };
    }

    /// <summary>Where the next bytes of the payload go: the rest of the current part's memory (native memory for an
    /// uncompressed payload, the gathering buffer for gzip), never more than <see cref="Length"/> − <see cref="Written"/>
    /// bytes; empty when complete. A reader fills a prefix of it and calls <see cref="Advance"/>, so received bytes land
    /// in the tensor without passing through another buffer.</summary>
    /// <remarks>Valid until the next <see cref="Advance"/>, <see cref="Write"/>, <see cref="Finish"/> or <see
    /// cref="Dispose"/>.</remarks>
    public Memory<byte> NextBuffer()
    {
        if (Complete) return Memory<byte>.Empty;
        if (gathered is not null) return gathered.AsMemory((int)Written, (int)(Length - Written));
        if (staging is not null) return staging.AsMemory(carry, (int)Math.Min(StagingBytes - carry, Length - Written));
        var part = segments[segment];
        var memory = new TensorMemory(part).Memory;
        return memory[segmentFilled..];
    }

    /// <summary>Records that <paramref name="count"/> bytes were written into <see cref="NextBuffer"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">More than that buffer holds.</exception>
    public void Advance(int count)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, "negative");
        if (gathered is not null)
        {
            if (count > Length - Written) throw new ArgumentOutOfRangeException(nameof(count), count, "more than the payload's remaining bytes");
            Written += count;
            return;
        }
        if (count == 0) return;
        if (staging is not null)
        {
            if (count > Math.Min(StagingBytes - carry, Length - Written)) throw new ArgumentOutOfRangeException(nameof(count), count, "more than the staging buffer's remaining bytes");
            Written += count;
            Widen(carry + count);
            return;
        }
        long room = segments[segment].bytes.Length - segmentFilled;
        if (count > room) throw new ArgumentOutOfRangeException(nameof(count), count, "more than the current part's remaining bytes");
        Written += count;
        segmentFilled += count;
        if (segmentFilled == segments[segment].bytes.Length && segment < segments.Length - 1)
        {
            segment++;
            segmentFilled = 0;
        }
    }

    /// <summary>Appends the next piece of the payload.</summary>
    /// <exception cref="InvalidDataException">More bytes than <see cref="Length"/>.</exception>
    public void Write(ReadOnlySpan<byte> data)
    {
        if (data.Length > Length - Written)
            throw new InvalidDataException($"more than the {Length} bytes announced");
        if (gathered is not null)
        {
            data.CopyTo(gathered.AsSpan((int)Written));
            Written += data.Length;
            return;
        }
        if (staging is not null)
        {
            while (!data.IsEmpty)
            {
                int n = Math.Min(StagingBytes - carry, data.Length);
                data[..n].CopyTo(staging.AsSpan(carry));
                data = data[n..];
                Written += n;
                Widen(carry + n);
            }
            return;
        }
        Written += data.Length;
        while (!data.IsEmpty)
        {
            var target = segments[segment].bytes[segmentFilled..];
            int n = Math.Min(target.Length, data.Length);
            data[..n].CopyTo(target);
            data = data[n..];
            segmentFilled += n;
            if (segmentFilled == segments[segment].bytes.Length && segment < segments.Length - 1)
            {
                segment++;
                segmentFilled = 0;
            }
        }
    }

    /// <summary>The float32 tensor of the shape, once the whole payload is written; the caller owns it.</summary>
    /// <exception cref="InvalidOperationException">Called before the payload is complete.</exception>
    /// <exception cref="InvalidDataException">A corrupt gzip payload.</exception>
    public Tensor Finish()
    {
        if (!Complete) throw new InvalidOperationException($"the payload is incomplete: {Written} of {Length} bytes");
        if (gathered is not null) return TensorCodec.Decode(gathered.AsSpan(0, (int)Length), encoding, shape);
        if (widened is not null)
        {
            handedOver = true;
            return widened;
        }
        if (segments.Length == 0) return zeros(shape, ScalarType.Float32);
        if (encoding.Precision == TransferPrecision.Float32)
        {
            handedOver = true;
            return segments[0];
        }
        using var scope = NewDisposeScope();
        var result = encoding.Precision == TransferPrecision.Int8Blockwise
            ? TensorCodec.DequantizeInt8(segments[0], segments[1], encoding.BlockSize, shape)
            : segments[0].to(ScalarType.Float32);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>Frees what was allocated for the payload (not a tensor <see cref="Finish"/> returned).</summary>
    public void Dispose()
    {
        if (gathered is not null) ArrayPool<byte>.Shared.Return(gathered);
        gathered = null;
        if (staging is not null) ArrayPool<byte>.Shared.Return(staging);
        staging = null;
        if (!handedOver)
        {
            foreach (var part in segments) part.Dispose();
            widened?.Dispose();
        }
    }

    /// <summary>Whether a payload of <paramref name="encoding"/> can be decoded into a float32 destination.</summary>
    public static bool DecodesInto(TransferEncoding encoding) =>
        !encoding.Gzip && encoding.Precision is TransferPrecision.Float32 or TransferPrecision.BFloat16 or TransferPrecision.Float16;

    /// <summary>Widens the whole elements among the first <paramref name="filled"/> staged bytes into the destination,
    /// after those already widened; a split element's first byte moves to the front for the next read.</summary>
    void Widen(int filled)
    {
        int whole = filled & ~1;
        var halves = MemoryMarshal.Cast<byte, ushort>(staging.AsSpan(0, whole));
        var into = MemoryMarshal.Cast<byte, float>(widenedMemory!.GetSpan().Slice((int)(convertedElements * 4), halves.Length * 4));
        if (encoding.Precision == TransferPrecision.BFloat16) BFloat16Bits.Widen(halves, into);
        else for (int i = 0; i < halves.Length; i++) into[i] = (float)BitConverter.UInt16BitsToHalf(halves[i]);
        convertedElements += halves.Length;
        carry = filled - whole;
        if (carry == 1) staging![0] = staging[filled - 1];
    }

}
