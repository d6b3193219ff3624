using System.Buffers.Binary;
using System.IO.Compression;

namespace FedLlm.Data.Datasets;

/// <summary>Gzip data that is truncated or corrupt, at a byte offset of the compressed file.</summary>
/// <param name="byteOffset">Where in the compressed file the problem shows.</param>
/// <param name="problem">What is wrong, in words for the user.</param>
internal sealed class CorruptGzipException(long byteOffset, string problem) : IOException(problem)
{
    /// <summary>Where in the compressed file the problem shows.</summary>
    public long ByteOffset { get; } = byteOffset;
}

/// <summary>
/// Decompresses a gzip file of one or more members (RFC 1952) and refuses one that ends early: every member must end
/// with a trailer whose CRC-32 and size match the data it decompressed to, as <c>gzip -t</c> checks.
/// </summary>
/// <remarks>
/// <para><see cref="GZipStream"/> does not do this by default: when its input ends mid-stream it simply returns 0, so
/// a file cut short reads as a shorter file (its strict mode is a process-wide AppContext switch, not ours to set).
/// This stream parses each member's header itself, inflates the raw deflate data with <see cref="DeflateStream"/>, and
/// checks the trailer when the deflate data ends.</para>
/// <para>The deflate stream reads its input in chunks, so where the deflate data ended is only known to lie within
/// the last chunk it took. The trailer is found there: the position whose 8 bytes hold this member's CRC-32 and size.
/// A truncated member has no such position (a false match needs 64 bits to agree by chance), so it is reported whether
/// the cut fell between records or inside one. Whatever follows a trailer must be another member or nothing.</para>
/// </remarks>
internal sealed class CheckedGzipStream : Stream
{
    private const int MinHeaderLength = 10;
    private const int TrailerLength = 8;
    private const byte FlagHeaderCrc = 0x02, FlagExtra = 0x04, FlagName = 0x08, FlagComment = 0x10;

    private readonly FileStream _file;
    private readonly long _length;
    private ChunkTrackingStream? _input;
    private DeflateStream? _inflater;
    private long _deflateStart;
    private long _nextMember;
    private uint _crc;
    private uint _size;
    private bool _ended;

    /// <summary>Takes ownership of a seekable, readable file positioned anywhere; reading starts at offset 0.</summary>
    public CheckedGzipStream(FileStream file)
    {
        _file = file;
        _length = file.Length;
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

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        // Local file reads: the synchronous path keeps the chunk bookkeeping in one place.
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(Read(buffer.Span));
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(Span<byte> buffer)
    {
        if (buffer.IsEmpty || _ended) return 0;
        while (true)
        {
            if (_inflater is null && !StartMember())
            {
                _ended = true;
                return 0;
            }

            int n;
            try
            {
                n = _inflater!.Read(buffer);
            }
            catch (InvalidDataException)
            {
                throw new CorruptGzipException(_input!.Position,
                    $"corrupt gzip data near byte {_input.Position:N0} (the compressed data cannot be decoded)");
            }

            if (n > 0)
            {
                _crc = Crc32.Append(_crc, buffer[..n]);
                _size += (uint)n; // ISIZE is the size modulo 2^32.
                return n;
            }

            EndMember();
        }
    }

    /// <summary>Parses the header of the member at <see cref="_nextMember"/>; false at the end of the file.</summary>
    private bool StartMember()
    {
        var start = _nextMember;
        if (start == _length && start > 0) return false;
        _file.Seek(start, SeekOrigin.Begin);
        Span<byte> fixedPart = stackalloc byte[MinHeaderLength];
        if (_file.ReadAtLeast(fixedPart, MinHeaderLength, throwOnEndOfStream: false) < MinHeaderLength)
            throw Truncated(_length, "in a gzip header");
        if (fixedPart[0] != 0x1F || fixedPart[1] != 0x8B)
            throw new CorruptGzipException(start, start == 0
                ? "not gzip data (no gzip magic bytes 1F 8B)"
                : $"unexpected bytes after the gzip data at byte {start:N0} (not another gzip member)");
        if (fixedPart[2] != 8)
            throw new CorruptGzipException(start + 2, $"unsupported gzip compression method {fixedPart[2]} at byte {start + 2:N0} (only deflate, 8, exists)");

        var flags = fixedPart[3];
        if ((flags & FlagExtra) != 0)
        {
            Span<byte> xlen = stackalloc byte[2];
            if (_file.ReadAtLeast(xlen, 2, throwOnEndOfStream: false) < 2) throw Truncated(_length, "in a gzip header");
            SkipBytes(BinaryPrimitives.ReadUInt16LittleEndian(xlen));
        }

        if ((flags & FlagName) != 0) SkipZeroTerminated();
        if ((flags & FlagComment) != 0) SkipZeroTerminated();
        if ((flags & FlagHeaderCrc) != 0) SkipBytes(2);

        _deflateStart = _file.Position;
        _input = new ChunkTrackingStream(_file);
        _inflater = new DeflateStream(_input, CompressionMode.Decompress, leaveOpen: true);
        _crc = 0;
        _size = 0;
        return true;
    }

    /// <summary>Finds and checks the trailer of the member just inflated, and where the next member starts.</summary>
    private void EndMember()
    {
        var consumed = _input!.Position;
        var from = Math.Max(_deflateStart, consumed - _input.LastChunkLength);
        var window = new byte[(int)(Math.Min(_length, consumed + TrailerLength) - from)];
        _file.Seek(from, SeekOrigin.Begin);
        var got = _file.ReadAtLeast(window, window.Length, throwOnEndOfStream: false);
        var sizeMatched = false;
        for (var p = 0; p + TrailerLength <= got; p++)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(window.AsSpan(p + 4)) != _size) continue;
            sizeMatched = true;
            if (BinaryPrimitives.ReadUInt32LittleEndian(window.AsSpan(p)) != _crc) continue;

            _inflater!.Dispose();
            _inflater = null;
            _nextMember = from + p + TrailerLength;
            return;
        }

        // A trailer with the right size but the wrong CRC-32 means damaged data; no trailer at all means the deflate
        // data ran out before its end (a false size match needs 32 bits to agree by chance).
        if (sizeMatched || consumed < _length)
            throw new CorruptGzipException(consumed,
                $"corrupt gzip data near byte {consumed:N0}: the CRC-32 in the member's trailer does not match the decompressed data");
        throw Truncated(_length, "before the gzip end-of-stream trailer");
    }

    private static CorruptGzipException Truncated(long length, string where) =>
        new(length, $"truncated gzip data: the file ends at byte {length:N0}, {where}; it was cut short, so the records " +
                    "after this point are lost (gzip -t fails on it too); download or compress it again");

    private void SkipBytes(int count)
    {
        if (_file.Position + count > _length) throw Truncated(_length, "in a gzip header");
        _file.Seek(count, SeekOrigin.Current);
    }

    private void SkipZeroTerminated()
    {
        int b;
        while ((b = _file.ReadByte()) > 0) { }
        if (b < 0) throw Truncated(_length, "in a gzip header");
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _inflater?.Dispose();
            _file.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>Passes reads through, remembering how far they reached and how long the last one was.</summary>
    private sealed class ChunkTrackingStream(FileStream file) : Stream
    {
        public override long Position { get => file.Position; set => throw new NotSupportedException(); }

        public int LastChunkLength { get; private set; }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var n = file.Read(buffer);
            if (n > 0) LastChunkLength = n;
            return n;
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
