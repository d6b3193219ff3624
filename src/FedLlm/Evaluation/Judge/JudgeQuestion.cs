namespace FedLlm.Evaluation.Judge;

/// <summary>
/// One question of MT-Bench or Vicuna-Bench in FastChat's question.jsonl layout (fastchat/llm_judge/data/*/question.jsonl):
/// <c>{"question_id", "category", "turns": [t1, t2?], "reference": [r1, r2?]?}</c>.
/// </summary>
/// <param name="QuestionId">The id as text; <see cref="NumericId"/> says whether the file wrote it as a number (MT-Bench does).</param>
/// <param name="Reference">Reference answers per turn, when the file carries them (MT-Bench's math, reasoning and coding questions).</param>
/// <param name="NumericId">True when the file wrote the id as a number, so it is written back the same way.</param>
/// <param name="Category">The question's category (writing, roleplay, math …); decides the judge prompt and
/// temperature.</param>
/// <param name="Turns">The user's turns, one or two.</param>
public sealed record JudgeQuestion(string QuestionId, bool NumericId, string Category, IReadOnlyList<string> Turns, IReadOnlyList<string>? Reference)
{
    /// <summary>Categories whose answers are graded against a reference answer (FastChat's NEED_REF_CATS).</summary>
    public static IReadOnlyList<string> ReferenceCategories { get; } = ["math", "reasoning", "coding"];

    /// <summary>True when the category is graded against a reference answer
    /// (<see cref="ReferenceCategories"/>).</summary>
    public bool NeedsReference => ReferenceCategories.Contains(Category);

    /// <exception cref="FedLlm.Data.DataFormatException">A record is malformed; the message names file, line and field.</exception>
    public static IReadOnlyList<JudgeQuestion> ReadJsonl(string path)
    {
        var questions = EvaluationJsonl.Read(path, r =>
        {
            var numeric = r.Element.TryGetProperty("question_id", out var id) && id.ValueKind == System.Text.Json.JsonValueKind.Number;
            var turns = r.StringList("turns");
            if (turns.Count is < 1 or > 2) throw r.Error("turns", $"expected one or two turns, got {turns.Count}");
            var reference = r.OptionalStringList("reference");
            if (reference is { Count: 0 }) reference = null;
            return new JudgeQuestion(r.Id("question_id"), numeric, r.OptionalString("category") ?? "general", turns, reference);
        });
        var duplicate = questions.GroupBy(q => q.QuestionId).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new FedLlm.Data.DataFormatException(path, null, null, "question_id", $"'{duplicate.Key}' appears more than once");
        return questions;
    }
}
