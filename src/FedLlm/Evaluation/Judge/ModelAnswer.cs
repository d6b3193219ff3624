using System.Text.Json;

namespace FedLlm.Evaluation.Judge;

/// <summary>
/// A model's answers to one question in FastChat's answer layout (gen_model_answer.py):
/// <c>{"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [a1, a2]}], "tstamp"}</c>.
/// The same layout holds FastChat's reference answers (reference_answer/gpt-4.jsonl).
/// </summary>
public sealed record ModelAnswer(string QuestionId, bool NumericId, string AnswerId, string ModelId, IReadOnlyList<string> Turns, double Timestamp)
{
    /// <summary>Reads an answer file; the first choice's turns are the answer, as FastChat's judge reads them.</summary>
    /// <exception cref="FedLlm.Data.DataFormatException">A record is malformed; the message names file, line and field.</exception>
    public static IReadOnlyList<ModelAnswer> ReadJsonl(string path) => EvaluationJsonl.Read(path, r =>
    {
        if (!r.Element.TryGetProperty("choices", out var choices) || choices.ValueKind != JsonValueKind.Array || choices.GetArrayLength() == 0)
            throw r.Error("choices", "missing or empty: expected [{\"index\": 0, \"turns\": [...]}]");
        var first = new JsonRecord(r.Path, r.Line, choices[0]);
        if (first.Element.ValueKind != JsonValueKind.Object) throw r.Error("choices[0]", "expected an object");
        var turns = first.OptionalStringList("turns") ?? throw r.Error("choices[0].turns", "missing");
        var numeric = r.Element.GetProperty("question_id").ValueKind == JsonValueKind.Number;
        var stamp = r.Element.TryGetProperty("tstamp", out var t) && t.ValueKind == JsonValueKind.Number ? t.GetDouble() : 0;
        return new ModelAnswer(r.Id("question_id"), numeric, r.OptionalString("answer_id") ?? "", r.OptionalString("model_id") ?? "", turns, stamp);
    });

    /// <summary>Writes answers one per line, in FastChat's layout.</summary>
    public static void WriteJsonl(string path, IEnumerable<ModelAnswer> answers)
    {
        ArgumentNullException.ThrowIfNull(answers);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using var writer = new StreamWriter(path, append: false, new System.Text.UTF8Encoding(false));
        foreach (var answer in answers)
        {
            writer.Write(JsonLines.Object(json =>
            {
                JsonLines.WriteId(json, "question_id", answer.QuestionId, answer.NumericId);
                json.WriteString("answer_id", answer.AnswerId);
                json.WriteString("model_id", answer.ModelId);
                json.WriteStartArray("choices");
                json.WriteStartObject();
                json.WriteNumber("index", 0);
                json.WriteStartArray("turns");
                foreach (var turn in answer.Turns) json.WriteStringValue(turn);
                json.WriteEndArray();
                json.WriteEndObject();
                json.WriteEndArray();
                json.WriteNumber("tstamp", answer.Timestamp);
            }));
            writer.Write('\n');
        }
    }
}
