using System.Text.Json;
using FedLlm.Data;

namespace FedLlm.Evaluation;

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
