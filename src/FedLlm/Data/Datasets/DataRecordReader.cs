using System.Collections;
using System.Globalization;
using System.IO.Compression;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Parquet;
using Parquet.Serialization;

namespace FedLlm.Data.Datasets;

/// <summary>How a data file is laid out on disk.</summary>
public enum DataFileFormat
{
    /// <summary>
    /// Decide from the content, not the extension: "PAR1" is Parquet, '[' a JSON array, '{' JSON Lines; a gzip file
    /// (hh-rlhf ships <c>train.jsonl.gz</c>) is decompressed on the fly and its content decides.
    /// </summary>
    Auto,

    /// <summary>One JSON array of objects (alpaca_data.json, MathInstruct.json, the MedAlpaca flashcards).</summary>
    JsonArray,

    /// <summary>One JSON object per line; blank lines are allowed.</summary>
    JsonLines,

    /// <summary>Apache Parquet, as the Hugging Face hub stores most sets (data/train-00000-of-00001.parquet).</summary>
    Parquet,
}

/// <summary>Where a record sits in its file, for error messages that point at the exact record.</summary>
/// <param name="FilePath">The file.</param>
/// <param name="LineNumber">1-based line (JSON Lines; JSON arrays only for syntax errors).</param>
/// <param name="ElementIndex">0-based element of a JSON array, or 0-based row of a Parquet file.</param>
/// <param name="IndexIsRow">True when <paramref name="ElementIndex"/> counts Parquet rows, so messages say "row".</param>
public sealed record RecordLocation(string FilePath, long? LineNumber, int? ElementIndex, bool IndexIsRow = false)
{
    /// <summary>An error at this record, naming <paramref name="field"/> when one field is at fault.</summary>
    public DataFormatException Error(string? field, string problem, Exception? inner = null) =>
        new(FilePath, LineNumber, ElementIndex, field, problem, inner, IndexIsRow);
}

/// <summary>One raw record: the row's columns as JSON nodes, whatever the file format.</summary>
/// <param name="Fields">The columns; nested Parquet lists and structs become JSON arrays and objects.</param>
/// <param name="Location">Where the record is, for errors.</param>
public sealed record DataRecord(JsonObject Fields, RecordLocation Location);

/// <summary>A record or the reason it could not be read; the caller decides whether to skip or throw.</summary>
internal readonly record struct RecordResult(DataRecord? Record, DataFormatException? Error);

/// <summary>
/// Streams the rows of JSON, JSON Lines (optionally gzip-compressed) and Parquet files as <see cref="DataRecord"/>s.
/// </summary>
/// <remarks>
/// <para>Memory is bounded by one record (JSON Lines), one read buffer (JSON arrays, parsed element by element as
/// bytes arrive) or one row group (Parquet, the unit its columns are stored in). A multi-gigabyte file is never held
/// whole.</para>
/// <para>Errors that leave the reader able to go on (a malformed line, a non-object element) are yielded as results
/// for the caller's skip-bad policy. Errors after which no record boundary can be found (a syntax error inside a JSON
/// array, a corrupt Parquet footer) are thrown.</para>
/// </remarks>
internal static class DataRecordReader
{
    private const int SniffBytes = 4096;

    /// <summary>Streams the records of a file in order.</summary>
    /// <exception cref="DataFormatException">The file holds no records, is truncated, is not UTF-8, or cannot be parsed
    /// past some point (thrown; record-level problems are yielded).</exception>
    public static async IAsyncEnumerable<RecordResult> ReadAsync(
        string path, DataFileFormat format, [EnumeratorCancellation] CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Data file not found: {path}", path);

        var (detected, gzip) = await DetectAsync(path, ct);
        if (format == DataFileFormat.Auto) format = detected;
        if (gzip && format == DataFileFormat.Parquet)
            throw new DataFormatException(path, null, null, null, "a gzip-compressed Parquet file cannot be read: Parquet needs random access; decompress it first");

        var count = 0;
        if (format == DataFileFormat.Parquet)
        {
            await foreach (var result in ReadParquetAsync(path, ct))
            {
                count++;
                yield return result;
            }
        }
        else
        {
            await using var stream = gzip ? new CheckedGzipStream(OpenFile(path, useAsync: false)) : (Stream)OpenFile(path);
            var records = format == DataFileFormat.JsonArray ? ReadArrayAsync(stream, path, ct) : ReadLinesAsync(stream, path, ct);
            await foreach (var result in records)
            {
                count++;
                yield return result;
            }
        }

        // An empty file is an error, not an empty data set: a training run on nothing, or on a file that was never
        // written, should stop here with the file's name rather than deep inside the trainer.
        if (count == 0) throw new DataFormatException(path, null, null, null, EmptyProblem(path, format, gzip));
    }

    private static string EmptyProblem(string path, DataFileFormat format, bool gzip) =>
        new FileInfo(path).Length == 0 ? "the file is empty (0 bytes): there are no records to read"
        : format == DataFileFormat.Parquet ? "the Parquet file has no rows"
        : format == DataFileFormat.JsonArray ? "the JSON array is empty: there are no records to read"
        : gzip ? "the file holds no records: it decompresses to nothing but blank lines"
        : "the file holds no records: it has nothing but blank lines";

    private static FileStream OpenFile(string path, bool useAsync = true) =>
        new(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 64 * 1024, useAsync);

    /// <summary>The format the content shows, and whether it is gzip-compressed.</summary>
    internal static async Task<(DataFileFormat Format, bool Gzip)> DetectAsync(string path, CancellationToken ct)
    {
        var buffer = new byte[SniffBytes];
        int total;
        bool gzip;
        await using (var file = OpenFile(path))
        {
            total = await file.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, ct);
            gzip = total >= 2 && buffer[0] == 0x1F && buffer[1] == 0x8B;
        }

        if (gzip)
        {
            // A gzip stream cannot seek back, so sniff from a second, throw-away decompressor.
            await using var unzip = new CheckedGzipStream(OpenFile(path, useAsync: false));
            total = 0;
            try
            {
                int n;
                while (total < buffer.Length && (n = await unzip.ReadAsync(buffer.AsMemory(total), ct)) > 0) total += n;
            }
            catch (CorruptGzipException) when (total > 0)
            {
                // Decide from what did decompress; the full read reports the damage at the line where it shows.
            }
            catch (CorruptGzipException e)
            {
                throw new DataFormatException(path, null, null, null, e.Message, e);
            }
        }

        if (total >= 4 && buffer.AsSpan(0, 4).SequenceEqual("PAR1"u8)) return (DataFileFormat.Parquet, gzip);
        var start = total >= 3 && buffer[0] == 0xEF && buffer[1] == 0xBB && buffer[2] == 0xBF ? 3 : 0;
        for (var i = start; i < total; i++)
        {
            switch (buffer[i])
            {
                case (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n':
                    continue;
                case (byte)'[':
                    return (DataFileFormat.JsonArray, gzip);
                case (byte)'{':
                    return (DataFileFormat.JsonLines, gzip);
                default:
                    throw new DataFormatException(path, null, null, null,
                        $"expected Parquet (\"PAR1\"), a JSON array ('[') or JSON Lines ('{{'), found {Describe(buffer[i])} at byte {i}" +
                        (buffer[i] is 0xFF or 0xFE ? " (a UTF-16 byte order mark? data files must be UTF-8)" : ""));
            }
        }

        // An empty (or whitespace-only) file reads as JSON Lines with no records, which ReadAsync then refuses.
        return (DataFileFormat.JsonLines, gzip);
    }

    private static string Describe(byte b) => b is >= 0x20 and < 0x7F ? $"'{(char)b}'" : $"byte 0x{b:X2}";

    private static async IAsyncEnumerable<RecordResult> ReadLinesAsync(
        Stream stream, string path, [EnumeratorCancellation] CancellationToken ct)
    {
        var lines = new Utf8LineReader(stream);
        while (true)
        {
            bool more;
            try
            {
                more = await lines.ReadAsync(ct);
            }
            catch (CorruptGzipException e)
            {
                // Never skippable: the rest of the file is lost, not bad.
                throw new DataFormatException(path, lines.LineNumber + 1, null, null, e.Message, e);
            }

            if (!more) yield break;
            if (IsBlank(lines.Line.Span)) continue;
            yield return JsonLineParser.Parse(lines.Line.Span, lines.LineOffset, new RecordLocation(path, lines.LineNumber, null));
        }
    }

    private static bool IsBlank(ReadOnlySpan<byte> line) => line.IndexOfAnyExcept(" \t\r"u8) < 0;

    private static async IAsyncEnumerable<RecordResult> ReadArrayAsync(
        Stream stream, string path, [EnumeratorCancellation] CancellationToken ct)
    {
        await using var checkedStream = new Utf8CheckingStream(stream, path);
        var elements = JsonSerializer.DeserializeAsyncEnumerable<JsonElement>(checkedStream, cancellationToken: ct);
        await using var enumerator = elements.GetAsyncEnumerator(ct);
        var index = 0;
        while (true)
        {
            bool hasNext;
            try
            {
                hasNext = await enumerator.MoveNextAsync();
            }
            catch (JsonException e)
            {
                // Not skippable: after a syntax error the parser has no element boundary to resume from.
                // The deserializer parses a whole buffer before yielding, and the exception's path ("$[12]...") counts
                // from the start of that buffer's batch; the elements yielded so far are those of earlier batches.
                var failedAt = index + (ElementIndexFromPath(e.Path) ?? 0);
                throw new DataFormatException(path, e.LineNumber + 1, failedAt, null, "malformed JSON: " + JsonErrors.Describe(e), e);
            }
            catch (CorruptGzipException e)
            {
                throw new DataFormatException(path, null, index, null, e.Message, e);
            }

            if (!hasNext) yield break;
            var where = new RecordLocation(path, null, index);
            var element = enumerator.Current;
            yield return element.ValueKind == JsonValueKind.Object
                ? new RecordResult(new DataRecord(JsonObject.Create(element)!, where), null)
                : new RecordResult(null, where.Error(null, $"expected a JSON object, got {element.ValueKind}"));
            index++;
        }
    }

    private static int? ElementIndexFromPath(string? jsonPath)
    {
        if (jsonPath is null || !jsonPath.StartsWith("$[", StringComparison.Ordinal)) return null;
        var end = jsonPath.IndexOf(']', 2);
        return end > 2 && int.TryParse(jsonPath.AsSpan(2, end - 2), NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i : null;
    }

    private static async IAsyncEnumerable<RecordResult> ReadParquetAsync(string path, [EnumeratorCancellation] CancellationToken ct)
    {
        await using var file = OpenFile(path);
        CheckParquetFrame(file, path);
        int rowGroups;
        try
        {
            await using var reader = await ParquetReader.CreateAsync(file, leaveStreamOpen: true, cancellationToken: ct);
            rowGroups = reader.RowGroupCount;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The library's own words here are about its internals ("Arithmetic operation resulted in an overflow").
            throw new DataFormatException(path, null, null, null,
                "not a Parquet file (it has the \"PAR1\" markers, but its footer metadata cannot be decoded: the file is corrupt)", e);
        }

        var row = 0;
        for (var group = 0; group < rowGroups; group++)
        {
            // One row group at a time: the unit Parquet stores columns in, so memory stays at one group's rows.
            IList<Dictionary<string, object>> rows;
            string[] columns;
            try
            {
                file.Seek(0, SeekOrigin.Begin);
                var result = await ParquetSerializer.DeserializeUntypedAsync(file, rowGroupIndex: group, cancellationToken: ct);
                rows = result.Data;
                columns = result.Schema.Fields.Select(f => f.Name).ToArray();
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Parquet.Net 6.1 does not implement repetition levels in DATA_PAGE_V2 pages, so nested lists written as
                // v2 (hyparquet-writer, or pyarrow with data_page_version="2.0") cannot be read; pyarrow's default, and
                // so the Hugging Face hub's files, use v1 pages. Say so rather than surface "not implemented".
                var reason = e.InnerException is NotImplementedException || e is NotImplementedException
                    ? "it holds a nested column stored in Parquet data page v2, which this reader cannot decode; re-save the file with" +
                      " pyarrow's default data_page_version=\"1.0\", or as JSON Lines"
                    : "its pages are corrupt or use an encoding this reader does not support";
                throw new DataFormatException(path, null, row, null, $"row group {group} cannot be read: {reason}", e, indexIsRow: true);
            }

            foreach (var values in rows)
            {
                var where = new RecordLocation(path, null, row++, IndexIsRow: true);
                var fields = new JsonObject();
                // The deserializer leaves null cells out; put them back so a null reads as null, not as a missing column.
                foreach (var name in columns) fields[name] = values.TryGetValue(name, out var value) ? ToNode((object?)value) : null;
                yield return new RecordResult(new DataRecord(fields, where), null);
            }
        }
    }

    /// <summary>
    /// Checks Parquet's frame before the library reads it: "PAR1" at both ends and a footer length that fits the file.
    /// Garbage or a truncated download would otherwise fail inside the footer decoder with an arithmetic overflow.
    /// </summary>
    private static void CheckParquetFrame(FileStream file, string path)
    {
        const int Magic = 4, FooterLength = 4;
        var length = file.Length;
        Span<byte> head = stackalloc byte[Magic];
        Span<byte> tail = stackalloc byte[FooterLength + Magic];
        if (length < Magic + FooterLength + Magic)
            throw NotParquet(path, $"{length} bytes is too short for a Parquet file");
        file.ReadExactly(head);
        file.Seek(length - tail.Length, SeekOrigin.Begin);
        file.ReadExactly(tail);
        file.Seek(0, SeekOrigin.Begin);
        if (!head.SequenceEqual("PAR1"u8)) throw NotParquet(path, "it does not start with \"PAR1\"");
        if (!tail[FooterLength..].SequenceEqual("PAR1"u8))
            throw NotParquet(path, "it does not end with \"PAR1\": it is truncated or not Parquet at all");
        var footer = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(tail);
        if (footer > length - (Magic + FooterLength + Magic))
            throw NotParquet(path, $"its footer claims {footer:N0} bytes of metadata, more than the file's {length:N0} bytes hold: it is truncated or corrupt");
    }

    private static DataFormatException NotParquet(string path, string reason) =>
        new(path, null, null, null, $"not a Parquet file ({reason})");

    /// <summary>Parquet's CLR values as JSON nodes: strings, numbers, lists and structs as JSON would hold them.</summary>
    private static JsonNode? ToNode(object? value) => value switch
    {
        null => null,
        string s => JsonValue.Create(s),
        ReadOnlyMemory<char> m => JsonValue.Create(m.ToString()),
        bool b => JsonValue.Create(b),
        int i => JsonValue.Create(i),
        long l => JsonValue.Create(l),
        short h => JsonValue.Create(h),
        sbyte sb => JsonValue.Create(sb),
        byte by => JsonValue.Create(by),
        uint ui => JsonValue.Create(ui),
        ulong ul => JsonValue.Create(ul),
        float f => JsonValue.Create(f),
        double d => JsonValue.Create(d),
        decimal m => JsonValue.Create(m),
        DateTime t => JsonValue.Create(t.ToString("O", CultureInfo.InvariantCulture)),
        DateTimeOffset t => JsonValue.Create(t.ToString("O", CultureInfo.InvariantCulture)),
        byte[] bytes => JsonValue.Create(Convert.ToBase64String(bytes)),
        IDictionary<string, object?> map => new JsonObject(map.Select(kv => KeyValuePair.Create(kv.Key, ToNode(kv.Value)))),
        IDictionary map => new JsonObject(map.Keys.Cast<object>().Select(k => KeyValuePair.Create(Convert.ToString(k, CultureInfo.InvariantCulture)!, ToNode(map[k])))),
        IEnumerable list => new JsonArray(list.Cast<object?>().Select(ToNode).ToArray()),
        _ => JsonValue.Create(Convert.ToString(value, CultureInfo.InvariantCulture)),
    };

    /// <summary>The JSON kind of a node, as the error messages name it ("String", "Number", "Null"...).</summary>
    internal static JsonValueKind KindOf(JsonNode? node) => node?.GetValueKind() ?? JsonValueKind.Null;
}
