using FedLlm.Evaluation;
using FedLlm.Evaluation.Tasks;
using FedLlm.Tests.Data;
using Parquet.Serialization;

namespace FedLlm.Tests.Evaluation;

public class MultipleChoiceTaskTests
{
    static readonly EvaluationRunOptions Zero = new() { BatchSize = 3 };

    /// <summary>The last question of a prompt (after the header and any shots).</summary>
    static string LastQuestion(string context) => context[(context.LastIndexOf("\n\n", StringComparison.Ordinal) + 2)..];

    /// <summary>
    /// Knows abstract algebra (scores the right letter highest) and always says A in macroeconomics, so the
    /// subjects score 3/3 and 2/4: micro 5/7, macro 0.75.
    /// </summary>
    static ScriptedEvaluationModel MmluModel() => new(r =>
    {
        string question = LastQuestion(r.Context);
        string best = question.StartsWith("Find the degree") ? " B" : question.StartsWith("Let p") ? " C" : question.StartsWith("Find the order") ? " A" : " A";
        return r.Continuation == best ? -0.5 : -2.0;
    });

    static EvaluationTaskSpec Spec(string name, string path, params (string Key, string Value)[] parameters) =>
        new(name, path, parameters.ToDictionary(p => p.Key, p => p.Value));

    [Fact]
    public void Mmlu_csv_reports_each_subject_and_the_micro_and_macro_averages()
    {
        var task = EvaluationTaskRegistry.Create(Spec("mmlu", EvalFixtures.Path("mmlu")));
        var report = task.Evaluate(MmluModel(), Zero);
        Assert.Equal(7, report.Items);
        Assert.Equal(5.0 / 7, report.Metrics["accuracy"], 12);
        Assert.Equal((1.0 + 0.5) / 2, report.Metrics["accuracy_macro"], 12);
        Assert.Equal(1.0, report.Groups["abstract_algebra"]["accuracy"]);
        Assert.Equal(0.5, report.Groups["high_school_macroeconomics"]["accuracy"]);
        // A quoted CSV field keeps its comma and its newline.
        Assert.Contains(report.Samples, s => s.Prompt.EndsWith("Find the order of the element (2, 3) in Z_4 x Z_6,\ngiven as a pair.\nA. 12\nB. 6\nC. 4\nD. 24\nAnswer:"));
    }

    [Fact]
    public void Mmlu_few_shot_prompt_is_the_papers_format_with_dev_answers()
    {
        var model = MmluModel();
        EvaluationTaskRegistry.Create(Spec("mmlu", EvalFixtures.Path("mmlu", "data"))).Evaluate(model, Zero with { FewShot = 1, Limit = 1 });
        Assert.Equal(
            "The following are multiple choice questions (with answers) about abstract algebra.\n\n" +
            "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n" +
            "Find the degree for the given field extension Q(sqrt(2)) over Q.\nA. 0\nB. 2\nC. 1\nD. 3\nAnswer:",
            model.Requests[0].Context);
        Assert.Equal([" A", " B", " C", " D"], model.Requests.Select(r => r.Continuation));
    }

    [Fact]
    public void Mmlu_more_shots_than_dev_questions_is_an_error_naming_the_subject()
    {
        var task = EvaluationTaskRegistry.Create(Spec("mmlu", EvalFixtures.Path("mmlu")));
        var error = Assert.Throws<ArgumentException>(() => task.Evaluate(MmluModel(), Zero with { FewShot = 2 }));
        Assert.Contains("high_school_macroeconomics", error.Message);
    }

    [Fact]
    public async Task Mmlu_parquet_in_the_cais_layout_scores_like_the_csv()
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "test-00000-of-00001.parquet");
        MmluRow[] rows =
        [
            new() { question = "Find the degree for the given field extension Q(sqrt(2)) over Q.", subject = "abstract_algebra", choices = ["0", "2", "1", "3"], answer = 1 },
            new() { question = "Let p = (1, 2, 5, 4)(2, 3) in S_5 . Find the index of <p> in S_5.", subject = "abstract_algebra", choices = ["8", "2", "24", "120"], answer = 2 },
            new() { question = "The GDP deflator measures", subject = "high_school_macroeconomics", choices = ["only consumer prices", "the price level of all final goods", "x", "y"], answer = 1 },
        ];
        await using (var file = File.Create(path)) await ParquetSerializer.SerializeAsync(rows, file);
        var report = EvaluationTaskRegistry.Create(Spec("mmlu", path)).Evaluate(MmluModel(), Zero);
        Assert.Equal(2.0 / 3, report.Metrics["accuracy"], 12);
        Assert.Equal((1.0 + 0.0) / 2, report.Metrics["accuracy_macro"], 12);
    }

    [Fact]
    public void Jsonl_choices_give_acc_and_byte_normalised_acc_norm()
    {
        // Item 1: "Paris" (5 bytes) −3 vs "a much longer wrong answer" (26 bytes) −4: acc picks Paris (right),
        // acc_norm picks the long one (−4/26 > −3/5, wrong). Item 2: answer given as text "7", scored highest.
        // Item 3: the model prefers " 3" (wrong) either way.
        var model = new ScriptedEvaluationModel(r => r.Continuation switch
        {
            " Paris" => -3, " a much longer wrong answer" => -4, " 7" => -1, " 3" => -1, _ => -5,
        });
        var report = EvaluationTaskRegistry.Create(Spec("mc", EvalFixtures.Path("mc.jsonl"))).Evaluate(model, Zero);
        Assert.Equal(2.0 / 3, report.Metrics["accuracy"], 12);
        Assert.Equal(1.0 / 3, report.Metrics["acc_norm"], 12);
        Assert.Equal(0.5, report.Groups["math"]["accuracy"]);
        Assert.Equal((1.0 + 0.5) / 2, report.Metrics["accuracy_macro"], 12);
        Assert.Equal("Question: What is the capital of France?\nAnswer:", model.Requests[0].Context);
    }

    [Fact]
    public void Bbh_multiple_choice_reads_the_options_from_the_input()
    {
        // Prefers (B) everywhere: right only on the second example.
        var model = new ScriptedEvaluationModel(r => r.Continuation == " (B)" ? -1 : -2);
        var report = EvaluationTaskRegistry.Create(Spec("bbh-mc", EvalFixtures.Path("bbh"))).Evaluate(model, Zero);
        Assert.Equal(3, report.Items); // object_counting's numeric targets are not multiple choice
        Assert.Equal(1.0 / 3, report.Metrics["accuracy"], 12);
        Assert.Equal([" (A)", " (B)", " (C)"], model.Requests.Take(3).Select(r => r.Continuation));
        Assert.StartsWith("Q: The following paragraphs", model.Requests[0].Context);
        Assert.EndsWith("(C) The orange book is the leftmost\nA:", model.Requests[0].Context);
    }

    [Fact]
    public void Unknown_tasks_and_parameters_are_errors_that_list_what_exists()
    {
        var unknown = Assert.Throws<ArgumentException>(() => EvaluationTaskRegistry.Create(Spec("mmlu-pro", EvalFixtures.Path("mc.jsonl"))));
        Assert.Contains("gsm8k", unknown.Message);
        var badParam = Assert.Throws<ArgumentException>(() => EvaluationTaskRegistry.Create(Spec("mc", EvalFixtures.Path("mc.jsonl"), ("shots", "3"))));
        Assert.Contains("train", badParam.Message);
        Assert.Throws<FileNotFoundException>(() => EvaluationTaskRegistry.Create(Spec("mc", "/nonexistent/mc.jsonl")));
    }

    [Fact]
    public void A_bad_answer_names_the_file_line_and_field()
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "bad.jsonl");
        File.WriteAllText(path, "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 5}\n");
        var error = Assert.Throws<FedLlm.Data.DataFormatException>(() => EvaluationTaskRegistry.Create(Spec("mc", path)));
        Assert.Contains("line 2", error.Message);
        Assert.Contains("'answer'", error.Message);
    }

    /// <summary>A row of cais/mmlu's Parquet files (column names as published; the list column is written as list/element).</summary>
    public sealed class MmluRow
    {
#pragma warning disable IDE1006 // the published column names
        public string question { get; set; } = "";
        public string subject { get; set; } = "";
        public List<string> choices { get; set; } = [];
        public long answer { get; set; }
#pragma warning restore IDE1006
    }
}
