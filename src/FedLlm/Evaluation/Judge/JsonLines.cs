using System.Text.Json;

namespace FedLlm.Evaluation.Judge;

/// <summary>One-line JSON objects for FastChat-compatible output files.</summary>
internal static class JsonLines
{
    public static string Object(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            write(json);
            json.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>An id as the question file wrote it: MT-Bench's are integers, and FastChat keys answers by that value.</summary>
    public static void WriteId(Utf8JsonWriter json, string name, string id, bool numeric)
    {
        if (numeric) { json.WritePropertyName(name); json.WriteRawValue(id); } else json.WriteString(name, id);
    }
}
