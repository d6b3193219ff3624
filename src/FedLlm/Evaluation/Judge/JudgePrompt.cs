using System.Text.RegularExpressions;

namespace FedLlm.Evaluation.Judge;

/// <summary>
/// A single-answer grading prompt of FastChat's llm_judge (data/judge_prompts.jsonl): a system prompt and a user-prompt
/// template with <c>{placeholders}</c>, answered with a "[[rating]]" from 1 to 10.
/// </summary>
/// <remarks>
/// The four prompts FastChat's gen_judgment.py uses in single mode are reproduced word for word (typos included, so
/// scores stay comparable with published MT-Bench numbers): <c>single-v1</c> for turn 1, <c>single-math-v1</c> for turn 1
/// of math/reasoning/coding with a reference answer, and their <c>-multi-turn</c> variants for turn 2, which show the
/// whole two-turn conversation and put the instruction in the system prompt.
/// </remarks>
public sealed partial record JudgePrompt(string Name, string SystemPrompt, string Template, bool ReferenceBased, bool MultiTurn)
{
    private const string RatingFormat =
        "After providing your explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: \"[[rating]]\", for example: \"Rating: [[5]]\".";

    /// <summary>FastChat's "single-v1": rate one answer of a one-turn question from 1 to 10.</summary>
    public static JudgePrompt SingleV1 { get; } = new(
        "single-v1",
        "You are a helpful assistant.",
        "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the user question displayed below. " +
        "Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. " +
        "Begin your evaluation by providing a short explanation. Be as objective as possible. " + RatingFormat +
        "\n\n[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]",
        ReferenceBased: false, MultiTurn: false);

    /// <summary>FastChat's "single-math-v1": rate one answer against a reference answer.</summary>
    public static JudgePrompt SingleMathV1 { get; } = new(
        "single-math-v1",
        "You are a helpful assistant.",
        "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the user question displayed below. " +
        "Your evaluation should consider correctness and helpfulness. You will be given a reference answer and the assistant's answer. " +
        "Begin your evaluation by comparing the assistant's answer with the reference answer. Identify and correct any mistakes. Be as objective as possible. " + RatingFormat +
        "\n\n[Question]\n{question}\n\n[The Start of Reference Answer]\n{ref_answer_1}\n[The End of Reference Answer]\n\n" +
        "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]",
        ReferenceBased: true, MultiTurn: false);

    /// <summary>FastChat's "single-v1-multi-turn": rate the second turn of a two-turn conversation.</summary>
    public static JudgePrompt SingleV1MultiTurn { get; } = new(
        "single-v1-multi-turn",
        "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the user question displayed below. " +
        "Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. " +
        "You evaluation should focus on the assistant's answer to the second user question. Begin your evaluation by providing a short explanation. " +
        "Be as objective as possible. " + RatingFormat + "\n\n",
        "<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant A:\n{answer_1}\n\n" +
        "### User:\n{question_2}\n\n### Assistant A:\n{answer_2}\n\n<|The End of Assistant A's Conversation with User|>",
        ReferenceBased: false, MultiTurn: true);

    /// <summary>FastChat's "single-math-v1-multi-turn": rate the second turn against reference answers.</summary>
    public static JudgePrompt SingleMathV1MultiTurn { get; } = new(
        "single-math-v1-multi-turn",
        "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the user question. " +
        "Your evaluation should consider correctness and helpfulness. You will be given a reference answer and the assistant's answer. " +
        "You evaluation should focus on the assistant's answer to the second question. Begin your evaluation by comparing the assistant's answer with the reference answer. " +
        "Identify and correct any mistakes. Be as objective as possible. " + RatingFormat + "\n\n",
        "<|The Start of Reference Answer|>\n\n### User:\n{question_1}\n\n### Reference answer:\n{ref_answer_1}\n\n" +
        "### User:\n{question_2}\n\n### Reference answer:\n{ref_answer_2}\n\n<|The End of Reference Answer|>\n\n\n" +
        "<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant A:\n{answer_1}\n\n" +
        "### User:\n{question_2}\n\n### Assistant A:\n{answer_2}\n\n<|The End of Assistant A's Conversation with User|>",
        ReferenceBased: true, MultiTurn: true);

    /// <summary>The prompt gen_judgment.py picks for a question and turn.</summary>
    public static JudgePrompt For(bool needsReference, int turn) => (needsReference, turn) switch
    {
        (false, 1) => SingleV1,
        (true, 1) => SingleMathV1,
        (false, 2) => SingleV1MultiTurn,
        (true, 2) => SingleMathV1MultiTurn,
        _ => throw new ArgumentOutOfRangeException(nameof(turn), turn, "MT-Bench has turns 1 and 2"),
    };

    /// <summary>
    /// The user prompt with every <c>{name}</c> replaced in one pass, as Python's <c>str.format</c> does, so braces inside
    /// a question or an answer are never expanded.
    /// </summary>
    /// <exception cref="ArgumentException">A placeholder has no value.</exception>
    public string Format(IReadOnlyDictionary<string, string> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        return Placeholder().Replace(Template, m => values.TryGetValue(m.Groups[1].Value, out var value)
            ? value
            : throw new ArgumentException($"Judge prompt '{Name}' needs a value for {{{m.Groups[1].Value}}}.", nameof(values)));
    }

    [GeneratedRegex(@"\{(\w+)\}")]
    private static partial Regex Placeholder();
}
