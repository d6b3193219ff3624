using System.Buffers;

namespace FedLlm.Data.Datasets;

/// <summary>Passes a stream through, failing at the first byte that is not valid UTF-8, with its line and offset.</summary>
/// <remarks>For JSON arrays, which are parsed by the serializer as bytes arrive: the serializer itself would carry an
/// invalid byte into a string and fail only when (and if) the string is read, without saying where.</remarks>
internal sealed class Utf8CheckingStream(Stream inner, string path) : Stream
{
    private readonly byte[] _carry = new byte[4];
    private int _carryLength;
    private long _offset;
    private long _line = 1;

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var n = inner.Read(buffer);
        Check(buffer[..n], isFinalBlock: n == 0 && !buffer.IsEmpty);
        return n;
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var n = await inner.ReadAsync(buffer, cancellationToken);
        Check(buffer.Span[..n], isFinalBlock: n == 0 && !buffer.IsEmpty);
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    private void Check(ReadOnlySpan<byte> bytes, bool isFinalBlock)
    {
        // A multi-byte sequence may straddle two reads: its first bytes wait in _carry until the rest arrive.
        var skip = 0;
        if (_carryLength > 0)
        {
            var carried = _carryLength;
            Span<byte> joined = stackalloc byte[8];
            _carry.AsSpan(0, carried).CopyTo(joined);
            var taken = Math.Min(bytes.Length, 4 - carried);
            bytes[..taken].CopyTo(joined[carried..]);
            var status = System.Text.Rune.DecodeFromUtf8(joined[..(carried + taken)], out _, out var consumed);
            if (status == OperationStatus.NeedMoreData && !isFinalBlock)
            {
                Carry(joined[..(carried + taken)]);
                Advance(bytes);
                return;
            }

            if (status != OperationStatus.Done) Fail(joined[0], -carried, bytes);
            skip = consumed - carried;
        }

        var rest = bytes[skip..];
        var tail = isFinalBlock ? 0 : IncompleteTail(rest).Length;
        var bad = Utf8Text.FirstInvalidByte(rest[..^tail]);
        if (bad >= 0) Fail(rest[bad], skip + bad, bytes);
        Carry(rest[^tail..]);
        Advance(bytes);
    }

    /// <summary>The last 0-3 bytes of a valid prefix that start a sequence not yet complete.</summary>
    private static ReadOnlySpan<byte> IncompleteTail(ReadOnlySpan<byte> bytes)
    {
        for (var back = 1; back <= Math.Min(3, bytes.Length); back++)
        {
            var b = bytes[^back];
            if ((b & 0xC0) == 0x80) continue; // a continuation byte: look further back for the lead byte
            var need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
            return need > back ? bytes[^back..] : [];
        }

        return [];
    }

    private void Carry(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(_carry);
        _carryLength = bytes.Length;
    }

    private void Advance(ReadOnlySpan<byte> bytes)
    {
        _offset += bytes.Length;
        _line += bytes.Count((byte)'\n');
    }

    private void Fail(byte value, int index, ReadOnlySpan<byte> bytes)
    {
        var line = _line + (index > 0 ? bytes[..index].Count((byte)'\n') : 0);
        throw new DataFormatException(path, line, null, null, Utf8Text.InvalidProblem(value, _offset + index));
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }
}
