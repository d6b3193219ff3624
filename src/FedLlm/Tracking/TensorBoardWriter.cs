using System.Buffers.Binary;
using System.Text;

namespace FedLlm.Tracking;

/// <summary>
/// Writes TensorBoard event files (<c>events.out.tfevents.{time}.{host}.{pid}</c>) with scalar summaries, the format
/// TensorFlow's and PyTorch's SummaryWriter produce, without either.
/// </summary>
/// <remarks>
/// <para>A file is a sequence of records: <c>uint64 length</c>, <c>uint32 masked_crc32c(length)</c>, <c>data</c>,
/// <c>uint32 masked_crc32c(data)</c>, little-endian (tensorflow/core/lib/io/record_writer.cc). Each data is an
/// <c>Event</c> protocol buffer (tensorflow/core/util/event.proto); the first carries <c>file_version "brain.Event:2"</c>,
/// the others <c>wall_time</c>, <c>step</c> and a <c>Summary</c> of <c>Value{tag, simple_value}</c> (summary.proto).</para>
/// <para>The few protobuf fields are encoded by hand: Event.wall_time = 1 (double), step = 2 (int64), file_version = 3
/// (string), summary = 5 (message); Summary.value = 1 (repeated message); Value.tag = 1 (string), simple_value = 2 (float).</para>
/// </remarks>
public sealed class TensorBoardWriter : IMetricsTracker
{
    private readonly FileStream stream;

    /// <summary>Creates a new event file (events.out.tfevents.{time}.{host}.{pid}.{random}) in
    /// <paramref name="directory"/>, creating the folder, and writes the file-version event.</summary>
    public TensorBoardWriter(string directory)
    {
        Directory.CreateDirectory(directory);
        double now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
        Path = System.IO.Path.Combine(directory,
            $"events.out.tfevents.{(long)now}.{Environment.MachineName}.{Environment.ProcessId}.{Guid.NewGuid().ToString("N")[..8]}");
        stream = new FileStream(Path, FileMode.CreateNew, FileAccess.Write, FileShare.Read);
        var header = new ProtoWriter();
        header.Double(1, now);
        header.String(3, "brain.Event:2");
        WriteRecord(header.ToArray());
        Flush();
    }

    /// <summary>The event file being written.</summary>
    public string Path { get; }

    /// <inheritdoc/>
    public void Log(long step, IReadOnlyDictionary<string, double> scalars)
    {
        if (scalars.Count == 0) return;
        var summary = new ProtoWriter();
        foreach (var (tag, value) in scalars)
        {
            var v = new ProtoWriter();
            v.String(1, tag);
            v.Float(2, (float)value);
            summary.Message(1, v.ToArray());
        }
        var e = new ProtoWriter();
        e.Double(1, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0);
        e.Int64(2, step);
        e.Message(5, summary.ToArray());
        WriteRecord(e.ToArray());
    }

    void WriteRecord(byte[] data)
    {
        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64LittleEndian(header, (ulong)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], Crc32C.Masked(header[..8]));
        stream.Write(header);
        stream.Write(data);
        Span<byte> footer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(footer, Crc32C.Masked(data));
        stream.Write(footer);
    }

    /// <inheritdoc/>
    public void Flush() => stream.Flush(flushToDisk: false);

    /// <summary>Closes the event file.</summary>
    public void Dispose() => stream.Dispose();

    /// <summary>The protobuf wire format for the handful of field kinds an Event needs.</summary>
    sealed class ProtoWriter
    {
        private readonly MemoryStream buffer = new();

        void Tag(int field, int wireType) => Varint((ulong)((field << 3) | wireType));

        void Varint(ulong value)
        {
            while (value >= 0x80) { buffer.WriteByte((byte)(value | 0x80)); value >>= 7; }
            buffer.WriteByte((byte)value);
        }

        public void Double(int field, double value)
        {
            Tag(field, 1);
            Span<byte> bytes = stackalloc byte[8];
            BinaryPrimitives.WriteDoubleLittleEndian(bytes, value);
            buffer.Write(bytes);
        }

        public void Float(int field, float value)
        {
            Tag(field, 5);
            Span<byte> bytes = stackalloc byte[4];
            BinaryPrimitives.WriteSingleLittleEndian(bytes, value);
            buffer.Write(bytes);
        }

        public void Int64(int field, long value) { Tag(field, 0); Varint(unchecked((ulong)value)); }

        public void String(int field, string value) => Message(field, Encoding.UTF8.GetBytes(value));

        public void Message(int field, byte[] bytes)
        {
            Tag(field, 2);
            Varint((ulong)bytes.Length);
            buffer.Write(bytes);
        }

        public byte[] ToArray() => buffer.ToArray();
    }
}
