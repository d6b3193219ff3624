using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;

namespace FedLlm.Data;

/// <summary>How an Alpaca-schema file is laid out on disk.</summary>
public enum AlpacaFileLayout
{
    /// <summary>Decide from the first non-whitespace character: '[' is a JSON array, '{' is JSON Lines.</summary>
    /// <remarks>The content decides, not the extension: Hugging Face exports JSON Lines under ".json" too.</remarks>
    Auto,

    /// <summary>One JSON array of objects (tatsu-lab/alpaca's alpaca_data.json).</summary>
    JsonArray,

    /// <summary>One JSON object per line; blank lines are allowed.</summary>
    JsonLines,
}

/// <summary>Options for <see cref="AlpacaReader"/>.</summary>
public sealed record AlpacaReadOptions
{
    /// <summary>The file layout; <see cref="AlpacaFileLayout.Auto"/> by default.</summary>
    public AlpacaFileLayout Layout { get; init; } = AlpacaFileLayout.Auto;

    /// <summary>
    /// Skip records that do not fit the schema instead of throwing, counting each in the <see cref="DataReadReport"/>.
    /// </summary>
    /// <remarks>A syntax error inside a JSON array still throws: the parser cannot find where the next element starts.</remarks>
    public bool SkipBad { get; init; }
}

/// <summary>The records of a file read in full, with the reader's report.</summary>
/// <param name="Examples">The examples in file order.</param>
/// <param name="Report">Counts of read and skipped records.</param>
public sealed record AlpacaReadResult(IReadOnlyList<InstructionExample> Examples, DataReadReport Report);

/// <summary>
/// Streams Alpaca-schema files (<c>instruction</c>, <c>input</c>, <c>output</c>) as <see cref="InstructionExample"/>s,
/// joined as OpenFedLLM's <c>alpaca_format</c> does.
/// </summary>
/// <remarks>
/// Memory stays bounded by one record or one read buffer: JSON Lines are parsed line by line, JSON arrays element by
/// element as each buffer arrives
/// (<see cref="JsonSerializer.DeserializeAsyncEnumerable{TValue}(Stream, JsonSerializerOptions?, CancellationToken)"/>).
/// All three fields must be present and be strings; other fields (e.g. Alpaca's <c>text</c>) are ignored.
/// </remarks>
public static class AlpacaReader
{
    private static readonly string[] Fields = ["instruction", "input", "output"];

    /// <summary>Streams the examples of a file.</summary>
    /// <param name="path">A JSON array or JSON Lines file.</param>
    /// <param name="options">Layout and skip-bad behaviour; defaults when null.</param>
    /// <param name="report">Receives the counts; required when <see cref="AlpacaReadOptions.SkipBad"/> is set, so that no record is dropped unseen.</param>
    /// <param name="cancellationToken">Stops the read between records.</param>
    /// <exception cref="DataFormatException">A record does not fit the schema and skip-bad is off, or the file is not JSON of the expected layout.</exception>
    public static async IAsyncEnumerable<InstructionExample> ReadAsync(
        string path,
        AlpacaReadOptions? options = null,
        DataReadReport? report = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= new AlpacaReadOptions();
        if (options.SkipBad && report is null)
            throw new ArgumentException("SkipBad needs a DataReadReport to count the skipped records in.", nameof(report));

        await using var stream = new FileStream(
            path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 64 * 1024, useAsync: true);
        var layout = options.Layout == AlpacaFileLayout.Auto ? await DetectLayoutAsync(stream, path, cancellationToken) : options.Layout;
        var records = layout == AlpacaFileLayout.JsonArray
            ? ReadArrayAsync(stream, path, cancellationToken)
            : ReadLinesAsync(stream, path, cancellationToken);

        await foreach (var (record, error) in records)
        {
            if (error is not null)
            {
                if (!options.SkipBad) throw error;
                report!.CountSkipped(error);
                continue;
            }

            report?.CountRead();
            yield return record!.ToInstructionExample();
        }
    }

    /// <summary>Streams the examples of a file synchronously; see <see cref="ReadAsync"/>.</summary>
    /// <inheritdoc cref="ReadAsync" path="/param"/>
    /// <exception cref="DataFormatException">A record does not fit the schema and skip-bad is off.</exception>
    public static IEnumerable<InstructionExample> Read(
        string path, AlpacaReadOptions? options = null, DataReadReport? report = null, CancellationToken cancellationToken = default)
    {
        // Validate now rather than at the first MoveNext, so a wrong call fails where it is made.
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (options is { SkipBad: true } && report is null)
            throw new ArgumentException("SkipBad needs a DataReadReport to count the skipped records in.", nameof(report));
        return ReadAsync(path, options, report, cancellationToken).ToBlockingEnumerable(cancellationToken);
    }

    /// <summary>Reads a whole file into memory with its report (small files, e.g. evaluation splits).</summary>
    /// <inheritdoc cref="ReadAsync" path="/param[@name='path']|/param[@name='options']"/>
    public static AlpacaReadResult ReadAll(string path, AlpacaReadOptions? options = null)
    {
        var report = new DataReadReport();
        var examples = Read(path, options, report).ToList();
        return new AlpacaReadResult(examples, report);
    }

    private static async Task<AlpacaFileLayout> DetectLayoutAsync(FileStream stream, string path, CancellationToken ct)
    {
        var buffer = new byte[4096];
        var total = await stream.ReadAsync(buffer, ct);
        stream.Seek(0, SeekOrigin.Begin);
        var start = total >= 3 && buffer[0] == 0xEF && buffer[1] == 0xBB && buffer[2] == 0xBF ? 3 : 0;
        for (var i = start; i < total; i++)
        {
            switch (buffer[i])
            {
                case (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n':
                    continue;
                case (byte)'[':
                    return AlpacaFileLayout.JsonArray;
                case (byte)'{':
                    return AlpacaFileLayout.JsonLines;
                default:
                    throw new DataFormatException(path, null, null, null,
                        $"expected a JSON array ('[') or JSON Lines ('{{'), found '{(char)buffer[i]}'");
            }
        }

        // An empty (or whitespace-only) file is an empty JSON Lines file: zero records, no error.
        return AlpacaFileLayout.JsonLines;
    }

    private static async IAsyncEnumerable<(AlpacaRecord? Record, DataFormatException? Error)> ReadLinesAsync(
        Stream stream, string path, [EnumeratorCancellation] CancellationToken ct)
    {
        using var reader = new StreamReader(stream, new UTF8Encoding(false), detectEncodingFromByteOrderMarks: true, leaveOpen: true);
        long lineNumber = 0;
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            yield return ParseLine(line, path, lineNumber);
        }
    }

    private static (AlpacaRecord?, DataFormatException?) ParseLine(string line, string path, long lineNumber)
    {
        try
        {
            using var document = JsonDocument.Parse(line);
            return ToRecord(document.RootElement, path, lineNumber, null);
        }
        catch (JsonException e)
        {
            return (null, new DataFormatException(path, lineNumber, null, null, "malformed JSON: " + e.Message, e));
        }
    }

    private static async IAsyncEnumerable<(AlpacaRecord? Record, DataFormatException? Error)> ReadArrayAsync(
        Stream stream, string path, [EnumeratorCancellation] CancellationToken ct)
    {
        var elements = JsonSerializer.DeserializeAsyncEnumerable<JsonElement>(stream, cancellationToken: ct);
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
                throw new DataFormatException(path, e.LineNumber + 1, failedAt, null, "malformed JSON: " + e.Message, e);
            }

            if (!hasNext) yield break;
            yield return ToRecord(enumerator.Current, path, null, index);
            index++;
        }
    }

    private static int? ElementIndexFromPath(string? jsonPath)
    {
        if (jsonPath is null || !jsonPath.StartsWith("$[", StringComparison.Ordinal)) return null;
        var end = jsonPath.IndexOf(']', 2);
        return end > 2 && int.TryParse(jsonPath.AsSpan(2, end - 2), NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i : null;
    }

    private static (AlpacaRecord?, DataFormatException?) ToRecord(JsonElement element, string path, long? line, int? index)
    {
        if (element.ValueKind != JsonValueKind.Object)
            return (null, new DataFormatException(path, line, index, null, $"expected a JSON object, got {element.ValueKind}"));

        var values = new string[Fields.Length];
        for (var i = 0; i < Fields.Length; i++)
        {
            if (!element.TryGetProperty(Fields[i], out var value))
                return (null, new DataFormatException(path, line, index, Fields[i], "missing"));
            if (value.ValueKind != JsonValueKind.String)
                return (null, new DataFormatException(path, line, index, Fields[i], $"expected a string, got {value.ValueKind}"));
            values[i] = value.GetString()!;
        }

        return (new AlpacaRecord(values[0], values[1], values[2]), null);
    }
}
