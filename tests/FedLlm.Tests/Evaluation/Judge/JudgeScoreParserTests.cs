using FedLlm.Evaluation.Judge;

namespace FedLlm.Tests.Evaluation.Judge;

public class JudgeScoreParserTests
{
    [Theory]
    [InlineData("The answer is good. Rating: [[8]]", 8)]
    [InlineData("Rating: [[6.5]]", 6.5)]
    [InlineData("[[10]]", 10)]
    // The first [[x]] wins, even after a single-bracket number.
    [InlineData("See [1]. Rating: [[7]] and later [[2]]", 7)]
    // Fallback: the first [x] when there is no [[x]].
    [InlineData("Mistakes in step [3] of 5. Rating 4", 3)]
    [InlineData("Rating: [9.]", 9)]
    // No rating: −1.
    [InlineData("I cannot rate this.", -1)]
    [InlineData("Rating: [[eight]]", -1)]
    [InlineData("Rating: [[-3]]", -1)]
    [InlineData("", -1)]
    public void Parse_follows_fastchat(string judgment, double expected) => Assert.Equal(expected, JudgeScoreParser.Parse(judgment));

    [Fact]
    public void Prompt_placeholders_are_filled_in_one_pass_like_str_format()
    {
        // An answer that contains a placeholder's text must stay literal.
        var prompt = JudgePrompt.SingleV1.Format(new Dictionary<string, string> { ["question"] = "Q?", ["answer"] = "use {question} here" });
        Assert.EndsWith("[Question]\nQ?\n\n[The Start of Assistant's Answer]\nuse {question} here\n[The End of Assistant's Answer]", prompt);
        Assert.StartsWith("[Instruction]\nPlease act as an impartial judge", prompt);
        var missing = Assert.Throws<ArgumentException>(() => JudgePrompt.SingleMathV1.Format(new Dictionary<string, string> { ["question"] = "q", ["answer"] = "a" }));
        Assert.Contains("{ref_answer_1}", missing.Message);
    }

    [Fact]
    public void Prompt_choice_follows_gen_judgment()
    {
        Assert.Equal("single-v1", JudgePrompt.For(needsReference: false, turn: 1).Name);
        Assert.Equal("single-math-v1", JudgePrompt.For(needsReference: true, turn: 1).Name);
        Assert.Equal("single-v1-multi-turn", JudgePrompt.For(needsReference: false, turn: 2).Name);
        Assert.Equal("single-math-v1-multi-turn", JudgePrompt.For(needsReference: true, turn: 2).Name);
        Assert.Equal("You are a helpful assistant.", JudgePrompt.SingleMathV1.SystemPrompt);
        Assert.EndsWith("for example: \"Rating: [[5]]\".\n\n", JudgePrompt.SingleV1MultiTurn.SystemPrompt);
    }
}
