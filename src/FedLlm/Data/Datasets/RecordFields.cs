using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace FedLlm.Data.Datasets;

/// <summary>Typed access to a record's columns; every failure names the file, the record and the field.</summary>
internal static class RecordFields
{
    /// <summary>A column that must be present and a string.</summary>
    /// <exception cref="DataFormatException">The column is missing or not a string.</exception>
    public static string String(DataRecord record, string name)
    {
        if (!record.Fields.TryGetPropertyValue(name, out var node))
            throw record.Location.Error(name, "missing");
        var kind = DataRecordReader.KindOf(node);
        if (kind != JsonValueKind.String)
            throw record.Location.Error(name, $"expected a string, got {kind}");
        return node!.GetValue<string>();
    }

    /// <summary>A column that must be present and a list.</summary>
    /// <exception cref="DataFormatException">The column is missing or not a list.</exception>
    public static JsonArray Array(DataRecord record, string name)
    {
        if (!record.Fields.TryGetPropertyValue(name, out var node))
            throw record.Location.Error(name, "missing");
        return node as JsonArray ?? throw record.Location.Error(name, $"expected a list, got {DataRecordReader.KindOf(node)}");
    }

    /// <summary>
    /// A scalar column as a category label: strings as they are, numbers and booleans in invariant text
    /// ("7.5", "true"), so any column can drive a label-based partition.
    /// </summary>
    /// <exception cref="DataFormatException">The column is missing, null, or a list/object.</exception>
    public static string Label(DataRecord record, string name)
    {
        if (!record.Fields.TryGetPropertyValue(name, out var node))
            throw record.Location.Error(name, "missing (named as the label column)");
        return DataRecordReader.KindOf(node) switch
        {
            JsonValueKind.String => node!.GetValue<string>(),
            JsonValueKind.Number => ((JsonValue)node!).TryGetValue(out double d)
                ? d.ToString("R", CultureInfo.InvariantCulture)
                : node!.ToJsonString(),
            JsonValueKind.True => "true",
            JsonValueKind.False => "false",
            var kind => throw record.Location.Error(name, $"a label must be a string, number or boolean, got {kind}"),
        };
    }
}
