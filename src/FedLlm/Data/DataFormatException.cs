namespace FedLlm.Data;

/// <summary>
/// A data file record that does not fit the expected schema: malformed JSON, a missing field, or a field of the wrong type.
/// </summary>
/// <remarks>The location properties let a caller point the user at the exact record to fix;
/// <see cref="Exception.Message"/> carries all of them in one line.</remarks>
public sealed class DataFormatException : Exception
{
    /// <summary>Creates the exception; the message is built from the location and the problem.</summary>
    /// <param name="filePath">The file being read.</param>
    /// <param name="lineNumber">1-based line of the record (always set for JSON Lines; for JSON arrays only for syntax errors).</param>
    /// <param name="elementIndex">0-based index of the element in a JSON array, or null for JSON Lines.</param>
    /// <param name="field">The offending field, or null when the whole record is at fault.</param>
    /// <param name="problem">What is wrong, e.g. "missing" or "expected a string, got Number".</param>
    /// <param name="innerException">The parser's exception, if any.</param>
    /// <param name="indexIsRow">True when <paramref name="elementIndex"/> counts the rows of a table (Parquet), not
    /// the elements of a JSON array; the message then says "row".</param>
    public DataFormatException(
        string filePath, long? lineNumber, int? elementIndex, string? field, string problem, Exception? innerException = null,
        bool indexIsRow = false)
        : base(BuildMessage(filePath, lineNumber, elementIndex, indexIsRow, field, problem), innerException)
    {
        FilePath = filePath;
        LineNumber = lineNumber;
        ElementIndex = elementIndex;
        Field = field;
        Problem = problem;
    }

    /// <summary>The file being read.</summary>
    public string FilePath { get; }

    /// <summary>1-based line number of the record, when known.</summary>
    public long? LineNumber { get; }

    /// <summary>0-based index of the element in a JSON array, or of the row in a Parquet file.</summary>
    public int? ElementIndex { get; }

    /// <summary>The offending field, or null when the record as a whole is at fault.</summary>
    public string? Field { get; }

    /// <summary>The problem without the location.</summary>
    public string Problem { get; }

    /// <summary>A file whose records were all skipped as bad: training on it would train on nothing.</summary>
    /// <param name="filePath">The file.</param>
    /// <param name="firstSkipped">The first record skipped, whose problem the message repeats; null if none was.</param>
    internal static DataFormatException NothingUsable(string filePath, DataFormatException? firstSkipped) =>
        new(filePath, null, null, null, firstSkipped is null
            ? "the file holds no usable records"
            : $"the file holds no usable records: every record was skipped as bad (the first: {firstSkipped.Message})", firstSkipped);

    private static string BuildMessage(string filePath, long? line, int? index, bool indexIsRow, string? field, string problem)
    {
        var where = filePath;
        if (line is not null) where += $": line {line}";
        if (index is not null) where += indexIsRow ? $": row {index}" : $": element {index}";
        return field is null ? $"{where}: {problem}" : $"{where}: field '{field}': {problem}";
    }
}
