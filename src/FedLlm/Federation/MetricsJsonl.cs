using System.Text.Json;
using System.Text.Json.Nodes;

namespace FedLlm.Federation;

/// <summary>
/// metrics.jsonl, one JSON object per committed round in snake_case (docs/metrics.md): the <see cref="RoundRecord"/>'s
/// properties with <c>round</c> numbered 1 … R, as every other output numbers rounds. Metric names inside maps
/// (client ids, "eval_rewards/margins", "fpb/accuracy") are kept as they are.
/// </summary>
public static class MetricsJsonl
{
    static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = false };

    /// <summary>One line (without the newline).</summary>
    public static string Line(RoundRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var node = JsonSerializer.SerializeToNode(record, SnakeCase)!.AsObject();
        node["round"] = record.Number;
        return node.ToJsonString(SnakeCase);
    }

    /// <summary>The whole file's text for <paramref name="history"/>.</summary>
    public static string Text(IEnumerable<RoundRecord> history) => string.Concat(history.Select(r => Line(r) + "\n"));

    /// <summary>Appends <paramref name="record"/>'s line to the file at <paramref name="path"/> in one write.</summary>
    /// <remarks>Not fsynced: the run's committed state is what survives a power cut, and resuming rewrites this file
    /// from it (<see cref="RunStore.LoadLatest"/>).</remarks>
    public static void Append(string path, RoundRecord record)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(Line(record) + "\n");
        using var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read, bufferSize: 1);
        stream.Write(bytes);
    }

    /// <summary>
    /// Reads a metrics.jsonl back into records: the snake_case schema (round 1 … R), or the PascalCase one that runs
    /// before it wrote ("Round" 0 … R−1), told apart line by line by the key that holds the round.
    /// </summary>
    /// <exception cref="InvalidDataException">A line is not a round record (names the file and line).</exception>
    public static IReadOnlyList<RoundRecord> Read(string path)
    {
        var records = new List<RoundRecord>();
        int lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                records.Add(ParseLine(line));
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}: line {lineNumber}: not a round record: {e.Message}", e);
            }
        }
        return records;
    }

    /// <summary>One metrics.jsonl line (either schema) as a record.</summary>
    /// <exception cref="JsonException">The line is not a round record.</exception>
    public static RoundRecord ParseLine(string line)
    {
        var node = JsonNode.Parse(line)?.AsObject() ?? throw new JsonException("not an object");
        RoundRecord? record;
        if (node.ContainsKey("round"))
        {
            record = node.Deserialize<RoundRecord>(SnakeCase) ?? throw new JsonException("empty record");
            return record with { Round = record.Round - 1 };
        }
        if (node.ContainsKey("Round")) return node.Deserialize<RoundRecord>() ?? throw new JsonException("empty record");
        throw new JsonException("no round number (\"round\" or \"Round\")");
    }
}
