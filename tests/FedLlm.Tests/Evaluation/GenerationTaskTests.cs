using FedLlm.Evaluation;
using FedLlm.Evaluation.Metrics;

namespace FedLlm.Tests.Evaluation;

public class GenerationTaskTests
{
    static readonly EvaluationRunOptions Options = new() { BatchSize = 2, MaxNewTokens = 32 };

    static EvaluationTaskSpec Spec(string name, string path, params (string Key, string Value)[] parameters) =>
        new(name, path, parameters.ToDictionary(p => p.Key, p => p.Value));

    /// <summary>Answers by the first words of the (last) question in the prompt.</summary>
    static ScriptedEvaluationModel Answering(params (string QuestionStart, string Output)[] script) => new(generate: prompt =>
    {
        string last = prompt[(prompt.LastIndexOf("Question: ", StringComparison.Ordinal) + 10)..];
        return script.First(s => last.StartsWith(s.QuestionStart, StringComparison.Ordinal)).Output;
    });

    [Fact]
    public void Gsm8k_scores_strict_and_flexible_extraction_against_the_hash_number()
    {
        var model = Answering(
            ("Natalia", " 48+24 = 72.\n#### 72"),             // strict ✓ flexible ✓
            ("A shop", " It sells 1,000 pens."),               // strict ✗ flexible ✓ (reference "#### 1,000" → 1000)
            ("Tom", " #### 5 apples, or maybe 6"),             // strict ✓ flexible ✗ (last number 6)
            ("A bag", " #### 7"),                              // both ✗
            ("Weng", " She earned $10."));                     // strict ✗ flexible ✓
        var report = EvaluationTaskRegistry.Create(Spec("gsm8k", EvalFixtures.Path("gsm8k", "test.jsonl"))).Evaluate(model, Options);
        Assert.Equal(2.0 / 5, report.Metrics["exact_match_strict"], 12);
        Assert.Equal(3.0 / 5, report.Metrics["exact_match_flexible"], 12);
        Assert.Equal(["Question:", "\n\n"], model.GenerationCalls[0].StopStrings);
        Assert.Equal("1000", report.Samples[1].Reference);
    }

    [Fact]
    public void Gsm8k_few_shot_prepends_worked_train_answers()
    {
        var model = new ScriptedEvaluationModel(generate: _ => "#### 0");
        var spec = Spec("gsm8k", EvalFixtures.Path("gsm8k", "test.jsonl"), ("train", EvalFixtures.Path("gsm8k", "train.jsonl")));
        EvaluationTaskRegistry.Create(spec).Evaluate(model, Options with { FewShot = 2, Limit = 1 });
        Assert.Equal(
            "Question: Betty has 5 coins and finds 2. How many coins does she have?\nAnswer: 5+2 = <<5+2=7>>7.\n#### 7\n\n" +
            "Question: A box holds 6 eggs. How many eggs are in 3 boxes?\nAnswer: 6*3 = <<6*3=18>>18.\n#### 18\n\n" +
            "Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?\nAnswer:",
            model.Prompts.Single());
    }

    [Fact]
    public void Bbh_generation_extracts_after_the_answer_is_and_groups_by_task()
    {
        // logical_deduction: (A) ✓ via "the answer is", (B) ✗, (C) ✓ via first line. object_counting: 6 ✓, 11 ✗, 8 ✗.
        var outputs = new Queue<string>(["So the answer is (a).", "So the answer is (C).", "(C)\nbecause", "6", "10", "the answer is 9."]);
        var model = new ScriptedEvaluationModel(generate: _ => outputs.Dequeue());
        var report = EvaluationTaskRegistry.Create(Spec("bbh", EvalFixtures.Path("bbh"))).Evaluate(model, Options with { BatchSize = 1 });
        Assert.Equal(3.0 / 6, report.Metrics["exact_match"], 12);
        Assert.Equal(2.0 / 3, report.Groups["logical_deduction_three_objects"]["exact_match"], 12);
        Assert.Equal(1.0 / 3, report.Groups["object_counting"]["exact_match"], 12);
        Assert.StartsWith("Q: The following paragraphs", model.Prompts[0]);
        Assert.EndsWith("\nA:", model.Prompts[0]);
    }

    [Fact]
    public void Generic_generation_uses_the_first_capture_group_of_the_extractor()
    {
        var model = new ScriptedEvaluationModel(generate: p => p.Contains("6 times 7") ? " The result: 42 units" : p.Contains("planet") ? " result: jupiter" : " I think 7");
        var spec = Spec("generate", EvalFixtures.Path("generate.jsonl"), ("extract", @"result: (\w+)"));
        var report = EvaluationTaskRegistry.Create(spec).Evaluate(model, Options);
        Assert.Equal(1.0 / 3, report.Metrics["exact_match"], 12); // "jupiter" ≠ "Jupiter" (case-sensitive); no match for "7"
        var ignoringCase = EvaluationTaskRegistry.Create(Spec("generate", EvalFixtures.Path("generate.jsonl"), ("extract", @"result: (\w+)"), ("ignore_case", "true")));
        Assert.Equal(2.0 / 3, ignoringCase.Evaluate(model, Options).Metrics["exact_match"], 12);
        Assert.Throws<ArgumentException>(() => EvaluationTaskRegistry.Create(Spec("generate", EvalFixtures.Path("generate.jsonl"), ("extract", "(unclosed"))));
    }

    [Fact]
    public void Overlap_scores_given_predictions_without_calling_the_model()
    {
        var report = EvaluationTaskRegistry.Create(Spec("overlap", EvalFixtures.Path("overlap", "overlap.jsonl"))).Evaluate(new ScriptedEvaluationModel(), Options);
        double bleu = Math.Exp(1 - 14.0 / 11) * Math.Pow(10.0 / 11 * 7.0 / 9 * 4.0 / 7 * 2.0 / 5, 0.25) * 100;
        Assert.Equal(bleu, report.Metrics["bleu"], 9);
        double rouge1 = 2 * (5.0 / 6) * (5.0 / 6) / (5.0 / 6 + 5.0 / 6); // LCS "the cat on the mat" = 5 of 6 on both sides
        double rouge2 = 2 * 1.0 * (5.0 / 8) / (1 + 5.0 / 8);
        Assert.Equal((rouge1 + rouge2) / 2, report.Metrics["rougeL"], 12);
    }

    [Fact]
    public void Overlap_generates_for_prompts()
    {
        var model = new ScriptedEvaluationModel(generate: _ => "the cat is on the mat");
        var report = EvaluationTaskRegistry.Create(Spec("rouge", EvalFixtures.Path("overlap", "generate.jsonl"))).Evaluate(model, Options);
        Assert.Equal(1.0, report.Metrics["rougeL"], 12);
        Assert.Equal(100.0, report.Metrics["bleu"], 9);
        Assert.Single(model.Prompts);
    }

    [Fact]
    public void Progress_counts_items_batch_by_batch_up_to_the_limit()
    {
        var reports = new List<EvaluationProgress>();
        var model = new ScriptedEvaluationModel(generate: _ => "#### 0");
        EvaluationTaskRegistry.Create(Spec("gsm8k", EvalFixtures.Path("gsm8k", "test.jsonl")))
            .Evaluate(model, Options with { Limit = 3 }, new SyncProgress(reports.Add));
        Assert.Equal([new(0, 3), new(2, 3), new(3, 3)], reports);
        Assert.Equal(3, model.Prompts.Count);
    }

    [Fact]
    public void Bbh_chain_of_thought_prompt_asks_to_think_step_by_step()
    {
        var model = new ScriptedEvaluationModel(generate: _ => "the answer is 6.");
        var spec = Spec("bbh", EvalFixtures.Path("bbh", "object_counting.json"), ("cot", "true"));
        var report = EvaluationTaskRegistry.Create(spec).Evaluate(model, Options with { FewShot = 1 });
        Assert.Equal(2, report.Items); // the first example is the exemplar
        Assert.StartsWith("Q: I have a blackberry", model.Prompts[0]);
        Assert.Contains("\nA: 6\n\nQ: I have an orange", model.Prompts[0]);
        Assert.EndsWith("\nA: Let's think step by step.", model.Prompts[0]);
    }

    sealed class SyncProgress(Action<EvaluationProgress> report) : IProgress<EvaluationProgress>
    {
        public void Report(EvaluationProgress value) => report(value);
    }
}
