using FedLlm.Evaluation.Metrics;

namespace FedLlm.Tests.Evaluation;

public class AnswerExtractionTests
{
    [Fact]
    public void Gsm8k_strict_takes_the_hash_number_and_flexible_the_last_number()
    {
        Assert.Equal("1234", AnswerExtraction.Gsm8kStrict("So she has 1,234.\n#### 1,234."));
        Assert.Null(AnswerExtraction.Gsm8kStrict("The answer is 5"));
        Assert.Equal("7", AnswerExtraction.Gsm8kFlexible("She paid $1,234.50 and then 7"));
        Assert.Equal("1234.50", AnswerExtraction.Gsm8kFlexible("She paid $1,234.50."));
        Assert.Equal("-3", AnswerExtraction.Gsm8kFlexible("the change is -3"));
        Assert.Null(AnswerExtraction.Gsm8kFlexible("no digits here"));
        Assert.Equal("72", AnswerExtraction.Gsm8kReference("48+24 = <<48+24=72>>72\n#### 72"));
        Assert.Equal("1000", AnswerExtraction.Gsm8kReference("#### 1,000"));
    }

    [Fact]
    public void Bbh_takes_the_text_after_the_answer_is_without_its_last_character_else_the_first_line()
    {
        Assert.Equal("(B)", AnswerExtraction.Bbh("Eli is below Amy. So the answer is (B)."));
        Assert.Equal("valid", AnswerExtraction.Bbh("\n valid \nmore text"));
    }
}
