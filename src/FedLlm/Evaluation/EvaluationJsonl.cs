using System.Text.Json;
using FedLlm.Data;

namespace FedLlm.Evaluation;

/// <summary>
/// Reads a benchmark's JSON Lines file record by record; every problem (bad JSON, missing field, wrong type) is a
/// <see cref="DataFormatException"/> naming the file, line and field.
/// </summary>
internal static class EvaluationJsonl
{
    /// <summary>One object per non-blank line, handed to <paramref name="parse"/> with its 1-based line number.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static List<T> Read<T>(string path, Func<JsonRecord, T> parse)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: data file not found", path);
        var records = new List<T>();
        long lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(line);
            }
            catch (JsonException e)
            {
                throw new DataFormatException(path, lineNumber, null, null, $"not valid JSON ({e.Message})", e);
            }

            using (document)
            {
                if (document.RootElement.ValueKind != JsonValueKind.Object)
                    throw new DataFormatException(path, lineNumber, null, null, $"expected a JSON object, got {document.RootElement.ValueKind}");
                records.Add(parse(new JsonRecord(path, lineNumber, document.RootElement)));
            }
        }

        return records;
    }
}
