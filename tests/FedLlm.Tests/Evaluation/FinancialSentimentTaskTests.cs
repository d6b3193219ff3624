using FedLlm.Evaluation;
using FedLlm.Evaluation.Metrics;
using FedLlm.Evaluation.Tasks;
using FedLlm.Tests.Data;

namespace FedLlm.Tests.Evaluation;

public class FinancialSentimentTaskTests
{
    static readonly EvaluationRunOptions Options = new() { BatchSize = 4, MaxNewTokens = 10 };

    static EvaluationTaskSpec Spec(string name, string path, params (string Key, string Value)[] parameters) =>
        new(name, path, parameters.ToDictionary(p => p.Key, p => p.Value));

    /// <summary>Always answers the same text.</summary>
    static ScriptedEvaluationModel Saying(string output) => new(generate: _ => output);

    [Fact]
    public void Change_target_is_fingpts_case_sensitive_substring_rule()
    {
        Assert.Equal("positive", FinGptSentiment.Normalize("Positive, not negative"));
        Assert.Equal("negative", FinGptSentiment.Normalize(" moderately negative"));
        Assert.Equal("neutral", FinGptSentiment.Normalize("POSITIVE"));
        Assert.Equal("neutral", FinGptSentiment.Normalize("I cannot tell"));
    }

    [Fact]
    public void Fpb_text_file_is_read_as_latin1_and_scored_with_sklearn_f1()
    {
        // All 10 rows (split=all): truth = 2 neutral, 3 negative, 5 positive. The model says positive for sentences
        // containing "profit" or "growth" (rows 4, 5, 6, 7, 8, 10), negative otherwise.
        var model = new ScriptedEvaluationModel(generate: p => p.Contains("profit") || p.Contains("growth") ? "positive" : "Negative");
        var report = EvaluationTaskRegistry.Create(Spec("fpb", EvalFixtures.Path("fpb", "Sentences_50Agree.txt"), ("split", "all"))).Evaluate(model, Options);
        string[] truth = ["neutral", "neutral", "negative", "positive", "positive", "positive", "positive", "negative", "negative", "positive"];
        string[] predicted = ["negative", "negative", "negative", "positive", "positive", "positive", "positive", "positive", "negative", "positive"];
        // By hand: negative P 2/4 R 2/3 → 4/7; neutral 0; positive P 5/6 R 5/5 → 10/11.
        Assert.Equal(7.0 / 10, report.Metrics["accuracy"], 12);
        Assert.Equal((4.0 / 7 + 0 + 10.0 / 11) / 3, report.Metrics["macro_f1"], 12);
        Assert.Equal((3 * 4.0 / 7 + 2 * 0 + 5 * 10.0 / 11) / 10, report.Metrics["weighted_f1"], 12);
        Assert.Equal(ClassificationMetrics.WeightedF1(truth, predicted), report.Metrics["weighted_f1"], 12);
        Assert.Contains("café chain rose by £5m", report.Samples[9].Prompt);
        Assert.Equal(
            "Instruction: What is the sentiment of this news? Please choose an answer from {negative/neutral/positive}.\n" +
            "Input: According to Gran , the company has no plans to move all production to Russia , although that is where the company is growing .\nAnswer: ",
            model.Prompts[0]);
    }

    [Fact]
    public void Fpb_default_is_fingpts_seeded_test_split()
    {
        // numpy default_rng(42).permutation(10) = [5, 6, 0, 7, ...]; test = the first ceil(0.25·10) = 3 rows.
        var model = Saying("neutral");
        var report = EvaluationTaskRegistry.Create(Spec("fpb", EvalFixtures.Path("fpb", "Sentences_50Agree.txt"))).Evaluate(model, Options);
        Assert.Equal(3, report.Items);
        Assert.Contains("FINANCING OF ASPOCOMP", model.Prompts[0]);
        Assert.Contains("For the last quarter of 2010", model.Prompts[1]);
        Assert.Contains("According to Gran", model.Prompts[2]);
        Assert.Equal(["positive", "positive", "neutral"], report.Samples.Select(s => s.Reference));
    }

    [Fact]
    public void Tfns_labels_are_negative_positive_neutral_and_the_tweet_instruction_is_used()
    {
        var report = EvaluationTaskRegistry.Create(Spec("tfns", EvalFixtures.Path("tfns", "sentiment_validation.csv"))).Evaluate(Saying("positive"), Options);
        Assert.Equal(["negative", "positive", "neutral", "negative"], report.Samples.Select(s => s.Reference));
        Assert.Equal(1.0 / 4, report.Metrics["accuracy"], 12);
        Assert.Contains("sentiment of this tweet", report.Samples[0].Prompt);
        Assert.Contains("Stocks to watch: Oil, \"FAANG\" and banks", report.Samples[2].Prompt);
    }

    [Fact]
    public void Nwgi_maps_strong_and_moderate_to_the_polarity_and_mild_to_neutral()
    {
        var report = EvaluationTaskRegistry.Create(Spec("nwgi", EvalFixtures.Path("nwgi", "test.jsonl"))).Evaluate(Saying("neutral"), Options);
        Assert.Equal(["positive", "neutral", "neutral", "negative", "neutral"], report.Samples.Select(s => s.Reference));
        Assert.Equal(3.0 / 5, report.Metrics["accuracy"], 12);
    }

    [Fact]
    public void Fiqa_folder_concatenates_train_validation_test_and_thresholds_scores()
    {
        var report = EvaluationTaskRegistry.Create(Spec("fiqa", EvalFixtures.Path("fiqa"), ("split", "all"))).Evaluate(Saying("neutral"), Options);
        // −0.374 → negative, 0.52 → positive, −0.1 → neutral (not < −0.1), 0.1 → positive (≥ 0.1), −0.099 → neutral.
        Assert.Equal(["negative", "positive", "neutral", "positive", "neutral"], report.Samples.Select(s => s.Reference));
        Assert.Contains("sentiment of this tweet", report.Samples[1].Prompt); // format "post"
        Assert.Contains("sentiment of this news", report.Samples[0].Prompt);
    }

    [Fact]
    public void A_template_prompt_wraps_instruction_and_input_as_alpaca_training_does()
    {
        var model = Saying("positive");
        EvaluationTaskRegistry.Create(Spec("nwgi", EvalFixtures.Path("nwgi", "test.jsonl"), ("prompt", "alpaca"))).Evaluate(model, Options with { Limit = 1 });
        Assert.Equal(FedLlm.Data.PromptTemplate.Alpaca.FormatPrompt(SentimentSources.NewsInstruction + " Apple shares surge to a record after blowout quarter"), model.Prompts[0]);
    }

    [Fact]
    public void A_bad_label_names_the_file_and_line()
    {
        using var dir = new TempDirectory();
        string path = dir.File("Sentences_50Agree.txt", "Good news .@positive\nOdd line .@bullish\n");
        var error = Assert.Throws<FedLlm.Data.DataFormatException>(() => EvaluationTaskRegistry.Create(Spec("fpb", path, ("split", "all"))));
        Assert.Contains("line 2", error.Message);
        Assert.Contains("bullish", error.Message);
    }

    [Fact]
    public void Fpb_hugging_face_layout_maps_0_1_2_to_negative_neutral_positive()
    {
        using var dir = new TempDirectory();
        string path = dir.File("train.jsonl", "{\"sentence\": \"a\", \"label\": 0}\n{\"sentence\": \"b\", \"label\": 1}\n{\"sentence\": \"c\", \"label\": 2}\n");
        var report = EvaluationTaskRegistry.Create(Spec("fpb", path, ("split", "all"))).Evaluate(Saying("x"), Options);
        Assert.Equal(["negative", "neutral", "positive"], report.Samples.Select(s => s.Reference));
        var bad = dir.File("bad.jsonl", "{\"sentence\": \"a\", \"label\": 3}\n");
        Assert.Contains("'label'", Assert.Throws<FedLlm.Data.DataFormatException>(() => EvaluationTaskRegistry.Create(Spec("fpb", bad, ("split", "all")))).Message);
    }
}
