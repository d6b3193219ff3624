using System.Text.Json;
using System.Text.Json.Nodes;

namespace FedLlm.Data.Datasets;

/// <summary>Parses one JSON Lines record from its UTF-8 bytes into a <see cref="DataRecord"/>, or the reason it cannot.</summary>
/// <remarks>
/// Top-level string values are read straight from the line into strings with <see cref="Utf8JsonReader"/>; only nested
/// values (UltraFeedback's message lists) go through a <see cref="JsonDocument"/>. A huge text field thus costs its
/// bytes once and its string once, not a second document copy as <c>JsonNode.Parse</c> would make.
/// </remarks>
internal static class JsonLineParser
{
    public static RecordResult Parse(ReadOnlySpan<byte> line, long lineOffset, RecordLocation where)
    {
        var bad = Utf8Text.FirstInvalidByte(line);
        if (bad >= 0) return new RecordResult(null, where.Error(null, Utf8Text.InvalidProblem(line[bad], lineOffset + bad)));

        var reader = new Utf8JsonReader(line);
        try
        {
            reader.Read();
            if (reader.TokenType != JsonTokenType.StartObject)
                return new RecordResult(null, where.Error(null, $"expected a JSON object, got {KindOf(reader.TokenType)}"));

            var fields = new JsonObject();
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var name = reader.GetString()!;
                reader.Read();
                var value = reader.TokenType == JsonTokenType.String ? JsonValue.Create(reader.GetString()) : JsonNode.Parse(ref reader);
                if (!fields.TryAdd(name, value)) return new RecordResult(null, where.Error(name, "appears twice in the record"));
            }

            if (reader.TokenType != JsonTokenType.EndObject)
                return new RecordResult(null, where.Error(null, "malformed JSON: the object is not closed"));
            if (reader.Read())
                return new RecordResult(null, where.Error(null, $"malformed JSON: text after the object (column {reader.TokenStartIndex + 1})"));
            return new RecordResult(new DataRecord(fields, where), null);
        }
        catch (JsonException e)
        {
            return new RecordResult(null, where.Error(null, "malformed JSON: " + JsonErrors.Describe(e), e));
        }
        catch (InvalidOperationException e)
        {
            // GetString on a string whose escapes spell an unpaired surrogate ("\ud800").
            return new RecordResult(null, where.Error(null,
                $"malformed JSON: a string near column {reader.TokenStartIndex + 1} escapes an invalid character (a lone surrogate)", e));
        }
    }

    private static JsonValueKind KindOf(JsonTokenType token) => token switch
    {
        JsonTokenType.StartArray => JsonValueKind.Array,
        JsonTokenType.String => JsonValueKind.String,
        JsonTokenType.Number => JsonValueKind.Number,
        JsonTokenType.True => JsonValueKind.True,
        JsonTokenType.False => JsonValueKind.False,
        JsonTokenType.Null => JsonValueKind.Null,
        _ => JsonValueKind.Undefined,
    };
}

/// <summary>System.Text.Json's messages in the user's words: its own position suffix replaced by a column.</summary>
internal static class JsonErrors
{
    /// <summary>The parser's complaint ("'}' is an invalid start of a value") with the column it happened at.</summary>
    public static string Describe(JsonException e)
    {
        var text = e.Message;
        foreach (var suffix in new[] { " Path: ", " LineNumber: " })
        {
            var at = text.IndexOf(suffix, StringComparison.Ordinal);
            if (at >= 0) text = text[..at];
        }

        // Converter errors name CLR types ("could not be converted to System.Text.Json..."); those mean nothing to a user.
        if (text.Contains("System.", StringComparison.Ordinal) || text.Length == 0) text = "the JSON cannot be parsed";
        text = text.TrimEnd('.', ' ');
        return e.BytePositionInLine is { } column ? $"{text} (column {column + 1})" : text;
    }
}
