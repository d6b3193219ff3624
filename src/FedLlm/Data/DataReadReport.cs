namespace FedLlm.Data;

/// <summary>
/// What a data reader did with a file: how many records it returned and which it skipped and why.
/// </summary>
/// <remarks>
/// Filled in while the returned sequence is enumerated, so it is complete only once enumeration has finished.
/// Counts accumulate when one report is passed to several reads. Not thread-safe: use one report per concurrent read.
/// </remarks>
public sealed class DataReadReport
{
    /// <summary>How many skipped records keep their full error in <see cref="SkippedErrors"/>; the count covers all.</summary>
    /// <remarks>A file that is bad throughout would otherwise hold one exception per line in memory.</remarks>
    public const int MaxRecordedErrors = 100;

    private readonly List<DataFormatException> _errors = [];

    /// <summary>Records returned to the caller.</summary>
    public int RecordsRead { get; private set; }

    /// <summary>Records skipped because they did not fit the schema (only with skip-bad enabled).</summary>
    public int RecordsSkipped { get; private set; }

    /// <summary>
    /// Well-formed records left out by a documented preprocessing rule, e.g. MathInstruct's de-duplication on
    /// <c>instruction</c>; counted so that the totals always add up to the records in the file.
    /// </summary>
    public int RecordsDeduplicated { get; private set; }

    /// <summary>The first <see cref="MaxRecordedErrors"/> reasons for skipping, in file order.</summary>
    public IReadOnlyList<DataFormatException> SkippedErrors => _errors;

    internal void CountRead() => RecordsRead++;

    internal void CountDeduplicated() => RecordsDeduplicated++;

    internal void CountSkipped(DataFormatException error)
    {
        RecordsSkipped++;
        if (_errors.Count < MaxRecordedErrors) _errors.Add(error);
    }

    /// <inheritdoc />
    public override string ToString() => RecordsDeduplicated == 0
        ? $"{RecordsRead} read, {RecordsSkipped} skipped"
        : $"{RecordsRead} read, {RecordsSkipped} skipped, {RecordsDeduplicated} duplicates removed";
}
