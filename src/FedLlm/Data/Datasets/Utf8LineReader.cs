namespace FedLlm.Data.Datasets;

/// <summary>Splits a stream into lines of raw bytes, each with its 1-based number and its byte offset.</summary>
/// <remarks>
/// Bytes rather than a <see cref="StreamReader"/>: the reader decodes a whole buffer ahead of the line it returns, so a
/// bad byte would surface at the wrong line; and a line is parsed as UTF-8 directly, without a UTF-16 copy of it.
/// The buffer grows to hold the longest line and shrinks back after it, so one huge record does not keep its memory.
/// </remarks>
internal sealed class Utf8LineReader(Stream stream)
{
    private const int InitialSize = 64 * 1024;
    private byte[] _buffer = new byte[InitialSize];
    private int _start;
    private int _scanned;
    private int _end;
    private bool _eof;
    private long _consumed;

    /// <summary>The current line without its "\n" or "\r\n" (and, on line 1, without a UTF-8 BOM).</summary>
    public ReadOnlyMemory<byte> Line { get; private set; }

    /// <summary>1-based number of <see cref="Line"/>.</summary>
    public long LineNumber { get; private set; }

    /// <summary>Offset in the (decompressed) data of the first byte of <see cref="Line"/>.</summary>
    public long LineOffset { get; private set; }

    /// <summary>Moves to the next line; false at the end of the data.</summary>
    public async ValueTask<bool> ReadAsync(CancellationToken ct)
    {
        while (true)
        {
            var newline = _buffer.AsSpan(_scanned, _end - _scanned).IndexOf((byte)'\n');
            if (newline >= 0)
            {
                var lineEnd = _scanned + newline;
                Emit(lineEnd, lineEnd + 1);
                return true;
            }

            _scanned = _end;
            if (_eof)
            {
                if (_start == _end) return false;
                Emit(_end, _end);
                return true;
            }

            MakeRoom();
            var n = await stream.ReadAsync(_buffer.AsMemory(_end), ct);
            if (n == 0) _eof = true;
            _end += n;
        }
    }

    private void Emit(int lineEnd, int next)
    {
        var length = lineEnd - _start;
        if (length > 0 && _buffer[lineEnd - 1] == (byte)'\r') length--;
        var from = _start;
        LineNumber++;
        LineOffset = _consumed;
        if (LineNumber == 1 && length >= 3 && _buffer.AsSpan(from, 3).SequenceEqual("\uFEFF"u8))
        {
            from += 3;
            length -= 3;
        }

        Line = _buffer.AsMemory(from, length);
        _consumed += next - _start;
        _start = next;
        _scanned = next;
    }

    /// <summary>Frees space after the unread bytes: moves them to the front, then grows or shrinks the buffer.</summary>
    private void MakeRoom()
    {
        var pending = _end - _start;
        var size = _buffer.Length;
        if (pending == size) size *= 2;
        else if (size > InitialSize && pending < InitialSize / 2) size = InitialSize;
        if (size != _buffer.Length)
        {
            var bigger = new byte[size];
            _buffer.AsSpan(_start, pending).CopyTo(bigger);
            _buffer = bigger;
        }
        else if (_start > 0)
        {
            _buffer.AsSpan(_start, pending).CopyTo(_buffer);
        }

        _scanned -= _start;
        _start = 0;
        _end = pending;
    }
}
