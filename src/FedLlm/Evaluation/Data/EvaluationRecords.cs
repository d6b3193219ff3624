using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using FedLlm.Data;
using FedLlm.Data.Datasets;

namespace FedLlm.Evaluation.Data;

/// <summary>
/// The rows of a benchmark file (JSON Lines, JSON array or Parquet, detected from the content), with typed field
/// access whose errors name the file, the record and the field.
/// </summary>
public static class EvaluationRecords
{
    /// <summary>Reads every record; the first malformed one throws a <see cref="DataFormatException"/> naming it.</summary>
    public static IReadOnlyList<DataRecord> ReadAll(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"benchmark file not found: {path}", path);
        var records = new List<DataRecord>();
        foreach (var result in DataRecordReader.ReadAsync(path, DataFileFormat.Auto).ToBlockingEnumerable())
            records.Add(result.Record ?? throw result.Error!);
        if (records.Count == 0) throw new DataFormatException(path, null, null, null, "the file holds no records");
        return records;
    }

    /// <summary>A required string field.</summary>
    /// <exception cref="FedLlm.Data.DataFormatException">The field is missing or not a string (names the file, record
    /// and field).</exception>
    public static string String(DataRecord record, string field) => RecordFields.String(record, field);

    /// <summary>A string field, or null when it is missing or not a string.</summary>
    public static string? OptionalString(DataRecord record, string field) =>
        record.Fields.TryGetPropertyValue(field, out var node) && node is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    /// <summary>Whether the record has <paramref name="field"/> with a non-null value.</summary>
    public static bool Has(DataRecord record, string field) => record.Fields.ContainsKey(field) && record.Fields[field] is not null;

    /// <summary>An integer column (a JSON number or Parquet int); a string of digits is accepted too.</summary>
    public static int Int(DataRecord record, string field)
    {
        var node = Node(record, field);
        if (node is JsonValue v)
        {
            if (Number(v) is double d && d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue) return (int)d;
            if (v.TryGetValue(out string? s) && int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i)) return i;
        }
        throw record.Location.Error(field, $"expected an integer, got {node?.ToJsonString() ?? "null"}");
    }

    /// <summary>A number column (a JSON number, Parquet float or a numeric string).</summary>
    public static double Double(DataRecord record, string field)
    {
        var node = Node(record, field);
        if (node is JsonValue v)
        {
            if (Number(v) is double d) return d;
            if (v.TryGetValue(out string? s) && double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double p)) return p;
        }
        throw record.Location.Error(field, $"expected a number, got {node?.ToJsonString() ?? "null"}");
    }

    /// <summary>A list of strings (JSON array or Parquet list column).</summary>
    public static IReadOnlyList<string> Strings(DataRecord record, string field)
    {
        var array = RecordFields.Array(record, field);
        return array.Select((n, i) => n is JsonValue v && v.TryGetValue(out string? s)
            ? s
            : throw record.Location.Error(field, $"element {i} is not a string")).ToList();
    }

    /// <summary>A JSON number's value whatever CLR type backs it (Parquet int64/int32/float columns arrive as such).</summary>
    static double? Number(JsonValue value) =>
        value.GetValueKind() == JsonValueKind.Number
        && double.TryParse(value.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? d : null;

    static JsonNode? Node(DataRecord record, string field) =>
        record.Fields.TryGetPropertyValue(field, out var node) ? node : throw record.Location.Error(field, "missing");
}
