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

/// <summary>One JSONL record with typed field access whose errors name the file, line and field.</summary>
internal readonly record struct JsonRecord(string Path, long Line, JsonElement Element)
{
    public DataFormatException Error(string? field, string problem) => new(Path, Line, null, field, problem);

    public bool Has(string field) => Element.TryGetProperty(field, out var value) && value.ValueKind != JsonValueKind.Null;

    public string String(string field) => OptionalString(field) ?? throw Error(field, "missing");

    public string? OptionalString(string field)
    {
        if (!Element.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind == JsonValueKind.String ? value.GetString()! : throw Error(field, $"expected a string, got {value.ValueKind}");
    }

    /// <summary>A string or a number, as text: ids are strings in HumanEval and FastChat answers, integers in MBPP and MT-Bench.</summary>
    public string Id(string field)
    {
        if (!Element.TryGetProperty(field, out var value)) throw Error(field, "missing");
        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString()!,
            JsonValueKind.Number => value.GetRawText(),
            _ => throw Error(field, $"expected a string or a number, got {value.ValueKind}"),
        };
    }

    public IReadOnlyList<string> StringList(string field) => OptionalStringList(field) ?? throw Error(field, "missing");

    public IReadOnlyList<string>? OptionalStringList(string field)
    {
        if (!Element.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Array) throw Error(field, $"expected an array of strings, got {value.ValueKind}");
        var list = new List<string>();
        var index = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String) throw Error($"{field}[{index}]", $"expected a string, got {item.ValueKind}");
            list.Add(item.GetString()!);
            index++;
        }

        return list;
    }
}
