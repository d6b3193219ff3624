using System.Runtime.CompilerServices;
using System.Text.Json;
using FedLlm.Data.Datasets;

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
/// With <see cref="AlpacaFileLayout.Auto"/> the shared record reader also takes gzip-compressed JSON Lines and Parquet
/// (by row group); see <see cref="Datasets.DatasetLoader"/> for the other published schemas.
/// All three fields must be present and be strings; other fields (e.g. Alpaca's <c>text</c>) are ignored.
/// </remarks>
public static class AlpacaReader
{
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

        var records = DataRecordReader.ReadAsync(path, ToFormat(options.Layout), cancellationToken)
            .Select(r => r.Error is not null ? (null, r.Error) : ToRecord(r.Record!));
        var read = 0;
        DataFormatException? firstSkipped = null;
        await foreach (var (record, error) in records)
        {
            if (error is not null)
            {
                if (!options.SkipBad) throw error;
                report!.CountSkipped(error);
                firstSkipped ??= error;
                continue;
            }

            read++;
            report?.CountRead();
            yield return record!.ToInstructionExample();
        }

        if (read == 0) throw DataFormatException.NothingUsable(path, firstSkipped);
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

    private static DataFileFormat ToFormat(AlpacaFileLayout layout) => layout switch
    {
        AlpacaFileLayout.JsonArray => DataFileFormat.JsonArray,
        AlpacaFileLayout.JsonLines => DataFileFormat.JsonLines,
        _ => DataFileFormat.Auto,
    };

    private static (AlpacaRecord?, DataFormatException?) ToRecord(DataRecord record)
    {
        try
        {
            return (new AlpacaRecord(
                RecordFields.String(record, "instruction"),
                RecordFields.String(record, "input"),
                RecordFields.String(record, "output")), null);
        }
        catch (DataFormatException e)
        {
            return (null, e);
        }
    }
}
