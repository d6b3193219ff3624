namespace FedLlm.Evaluation.Judge;

/// <summary>
/// One single-answer grading in FastChat's judgment layout (model_judgment/{judge}_single.jsonl):
/// <c>{"question_id", "model", "judge": [judge_model, prompt_name], "user_prompt", "judgment", "score", "turn", "tstamp"}</c>.
/// </summary>
/// <param name="Score">The parsed rating, or −1 when the judge's text held none (left out of every mean, as FastChat's show_result does).</param>
/// <param name="Turn">1, or 2 for the second turn of a two-turn question.</param>
/// <param name="QuestionId">The question's id as text.</param>
/// <param name="NumericId">True when the id is written as a number.</param>
/// <param name="Model">The graded model's id.</param>
/// <param name="JudgeModel">The judge model's name.</param>
/// <param name="PromptName">The judge prompt used (single-v1 …).</param>
/// <param name="UserPrompt">The prompt the judge was sent.</param>
/// <param name="Text">The judge's reply.</param>
/// <param name="Timestamp">Unix time of the judgment, in seconds.</param>
public sealed record Judgment(
    string QuestionId, bool NumericId, string Model, string JudgeModel, string PromptName, string UserPrompt, string Text, double Score, int Turn,
    double Timestamp)
{
    /// <summary>True when the judge's reply held a rating.</summary>
    public bool HasScore => Score >= 0;

    /// <summary>Writes judgments one per line, in FastChat's layout.</summary>
    public static void WriteJsonl(string path, IEnumerable<Judgment> judgments)
    {
        ArgumentNullException.ThrowIfNull(judgments);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using var writer = new StreamWriter(path, append: false, new System.Text.UTF8Encoding(false));
        foreach (var j in judgments)
        {
            writer.Write(JsonLines.Object(json =>
            {
                JsonLines.WriteId(json, "question_id", j.QuestionId, j.NumericId);
                json.WriteString("model", j.Model);
                json.WriteStartArray("judge");
                json.WriteStringValue(j.JudgeModel);
                json.WriteStringValue(j.PromptName);
                json.WriteEndArray();
                json.WriteString("user_prompt", j.UserPrompt);
                json.WriteString("judgment", j.Text);
                // FastChat writes an integer when the judge wrote one ("[[8]]" → 8) and −1 for no rating.
                if (j.Score == Math.Floor(j.Score)) json.WriteNumber("score", (long)j.Score); else json.WriteNumber("score", j.Score);
                json.WriteNumber("turn", j.Turn);
                json.WriteNumber("tstamp", j.Timestamp);
            }));
            writer.Write('\n');
        }
    }
}
