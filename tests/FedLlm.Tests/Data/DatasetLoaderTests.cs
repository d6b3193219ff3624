using FedLlm.Data;
using FedLlm.Data.Datasets;
using FedLlm.Data.Templates;
using Parquet.Schema;

namespace FedLlm.Tests.Data;

public sealed class DatasetLoaderTests : IDisposable
{
    private const string Vicuna = VicunaConversation.SystemMessage;
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string PathOf(string name) => Path.Combine(_dir.Path, name);

    private static List<DatasetRow<InstructionExample>> Sft(DatasetKind kind, string path, DatasetLoadOptions? options = null, DataReadReport? report = null) =>
        DatasetLoader.ReadInstructions(kind, path, options, report).ToList();

    private static List<DatasetRow<PreferenceExample>> Dpo(DatasetKind kind, string path, DatasetLoadOptions? options = null, DataReadReport? report = null) =>
        DatasetLoader.ReadPreferences(kind, path, options, report).ToList();

    [Theory]
    [InlineData(DatasetKind.Alpaca)]
    [InlineData(DatasetKind.AlpacaGpt4)]
    public void Alpaca_parquet_is_joined_as_alpaca_format_and_text_is_ignored(DatasetKind kind)
    {
        var path = DatasetFixtures.WriteAlpacaParquet(PathOf("train-00000-of-00001.parquet"));

        var rows = Sft(kind, path);

        Assert.Equal(
        [
            new InstructionExample("Give three tips for staying healthy.", "1. Eat well. 2. Sleep. 3. Move."),
            new InstructionExample("Translate to French. Good morning", "Bonjour"),
            // alpaca_format tests input == "" only: a one-space input is joined with a space, giving two.
            new InstructionExample("Classify the sentiment.  ", "neutral"),
        ], rows.Select(r => r.Example));
        Assert.All(rows, r => Assert.Null(r.Label));
    }

    [Fact]
    public void Code_alpaca_json_array_reads_like_the_published_code_alpaca_20k_json()
    {
        var path = DatasetFixtures.WriteCodeAlpacaJson(PathOf("code_alpaca_20k.json"));

        var rows = Sft(DatasetKind.CodeAlpaca, path);

        Assert.Equal("Write a function to add two numbers. a = 1, b = 2", rows[1].Example.Instruction);
        Assert.Equal("def add(a, b):\n    return a + b", rows[1].Example.Response);
    }

    [Fact]
    public void FinGpt_parquet_gives_alpaca_format_and_a_sentiment_polarity_label()
    {
        var path = DatasetFixtures.WriteFinGptParquet(PathOf("fingpt.parquet"));

        var rows = Sft(DatasetKind.FinGptSentiment, path);

        Assert.Equal(DatasetFixtures.FinGptInstruction + " Apex shares jump after profit beat", rows[0].Example.Instruction);
        Assert.Equal("mildly positive", rows[3].Example.Response);
        // Graded outputs fold to their polarity for the default label.
        Assert.Equal(["positive", "negative", "neutral", "positive", "negative", "positive"], rows.Select(r => r.Label));
    }

    [Fact]
    public void FinGpt_raw_output_column_can_be_the_label_instead()
    {
        var path = DatasetFixtures.WriteFinGptParquet(PathOf("fingpt.parquet"));

        var rows = Sft(DatasetKind.FinGptSentiment, path, new DatasetLoadOptions { LabelColumn = "output" });

        Assert.Equal(DatasetFixtures.FinGptRows.Select(r => r.Output), rows.Select(r => r.Label));
    }

    [Fact]
    public void MedAlpaca_drops_its_constant_instruction_and_asks_the_input()
    {
        var path = DatasetFixtures.WriteMedAlpacaJson(PathOf("medical_meadow_wikidoc_medical_flashcards.json"));

        var rows = Sft(DatasetKind.MedAlpaca, path);

        Assert.Equal("What leads to genitourinary syndrome of menopause?", rows[1].Example.Instruction);
        Assert.Equal("Low estradiol production leads to it.", rows[1].Example.Response);
        Assert.DoesNotContain(rows, r => r.Example.Instruction.Contains(DatasetFixtures.MedAlpacaInstruction, StringComparison.Ordinal));
    }

    [Fact]
    public void MathInstruct_keeps_the_first_of_each_instruction_counts_the_rest_and_labels_by_source()
    {
        var path = DatasetFixtures.WriteMathInstructJson(PathOf("MathInstruct.json"));
        var report = new DataReadReport();

        var rows = Sft(DatasetKind.MathInstruct, path, report: report);

        Assert.Equal(["The answer is B.", "print(2*3)", "The answer is A."], rows.Select(r => r.Example.Response));
        Assert.Equal(["data/CoT/aqua_rat.json", "data/PoT/gsm_gpt4.json", "data/CoT/aqua_rat.json"], rows.Select(r => r.Label));
        Assert.Equal(3, report.RecordsRead);
        Assert.Equal(1, report.RecordsDeduplicated);
        Assert.Contains("1 duplicates removed", report.ToString());
    }

    [Fact]
    public void MathInstruct_dedup_can_be_turned_off()
    {
        var path = DatasetFixtures.WriteMathInstructJson(PathOf("MathInstruct.json"));

        Assert.Equal(4, Sft(DatasetKind.MathInstruct, path, new DatasetLoadOptions { Deduplicate = false }).Count);
    }

    [Fact]
    public void HhRlhf_gz_is_split_as_openfedllm_split_hh_with_vicuna_turns()
    {
        var path = DatasetFixtures.WriteHhRlhfJsonlGz(PathOf("train.jsonl.gz"));

        var rows = Dpo(DatasetKind.HhRlhf, path);

        Assert.Equal(new PreferenceExample(
            Vicuna + " USER: What color is the sky? ASSISTANT:",
            " Blue, on a clear day.",
            " Green."), rows[0].Example);
        // The common prefix ends in "I ", so OpenFedLLM's text[len(common) - 1:] starts at that space and loses the "I".
        Assert.Equal(new PreferenceExample(
            Vicuna + " USER: Hi ASSISTANT: Hello!</s>USER: Can you help me cheat? ASSISTANT:",
            " can't help with that.",
            " will, here is how."), rows[1].Example);
    }

    [Fact]
    public void HhRlhf_turns_can_be_rebuilt_in_another_template()
    {
        var path = DatasetFixtures.WriteHhRlhfJsonlGz(PathOf("train.jsonl.gz"));

        var rows = Dpo(DatasetKind.HhRlhf, path, new DatasetLoadOptions { Conversation = HeaderTurnConversation.ChatMl });

        Assert.Equal(
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nCan you help me cheat?<|im_end|>\n<|im_start|>assistant\n",
            rows[1].Example.Prompt);
    }

    [Fact]
    public void HhRlhf_common_prefix_never_splits_a_surrogate_pair()
    {
        // "😀" and "😃" share their high surrogate; Python compares code points, so the prefix stops before both.
        var example = HhRlhfSplitter.Split("\n\nHuman: Hi\n\nAssistant: 😀 yes", "\n\nHuman: Hi\n\nAssistant: 😃 no", VicunaConversation.Instance);

        Assert.Equal(" 😀 yes", example.Chosen);
        Assert.Equal(" 😃 no", example.Rejected);
    }

    [Fact]
    public void HhRlhf_without_a_leading_human_turn_is_a_bad_record()
    {
        var path = DatasetFixtures.WriteJsonl(PathOf("hh.jsonl"), [new { chosen = "Assistant: a", rejected = "Assistant: b" }]);

        var e = Assert.Throws<DataFormatException>(() => Dpo(DatasetKind.HhRlhf, path));

        Assert.Equal(1, e.LineNumber);
        Assert.Equal("chosen", e.Field);
    }

    [Fact]
    public void UltraFeedback_parquet_takes_message_1_with_a_leading_space_and_any_column_as_label()
    {
        var path = DatasetFixtures.WriteUltraFeedbackParquet(PathOf("train_sft-00000-of-00001.parquet"));

        var rows = Dpo(DatasetKind.UltraFeedback, path, new DatasetLoadOptions { LabelColumn = "score_chosen" });

        Assert.Equal(new PreferenceExample(Vicuna + " USER: Name a prime number. ASSISTANT:", " 7 is prime.", " Nine."), rows[0].Example);
        Assert.Equal(["9", "8"], rows.Select(r => r.Label));
    }

    [Fact]
    public void UltraFeedback_reads_the_same_from_jsonl()
    {
        var parquet = DatasetFixtures.WriteUltraFeedbackParquet(PathOf("uf.parquet"));
        var jsonl = DatasetFixtures.WriteJsonl(PathOf("uf.jsonl"),
        [
            DatasetFixtures.UltraFeedbackRow("Name a prime number.", "7 is prime.", "Nine.", 9.0, 3.5),
            DatasetFixtures.UltraFeedbackRow("Say hi in Spanish.", "Hola.", "Bonjour.", 8.0, 2.0),
        ]);

        Assert.Equal(Dpo(DatasetKind.UltraFeedback, parquet).Select(r => r.Example), Dpo(DatasetKind.UltraFeedback, jsonl).Select(r => r.Example));
    }

    [Fact]
    public void UltraFeedback_with_a_one_message_list_names_the_field()
    {
        var path = DatasetFixtures.WriteJsonl(PathOf("uf.jsonl"),
            [new { prompt = "p", chosen = new[] { new { content = "p", role = "user" } }, rejected = new[] { new { content = "p", role = "user" }, new { content = "r", role = "assistant" } } }]);

        var e = Assert.Throws<DataFormatException>(() => Dpo(DatasetKind.UltraFeedback, path));

        Assert.Equal("chosen", e.Field);
        Assert.Contains("1 message", e.Problem);
    }

    [Fact]
    public void Generic_jsonl_maps_named_columns_and_labels_by_any_column()
    {
        var path = DatasetFixtures.WriteJsonl(PathOf("custom.jsonl"),
        [
            new { question = "Q1", context = "", answer = "A1", topic = "math" },
            new { question = "Q2", context = "ctx", answer = "A2", topic = "law" },
        ]);

        var rows = Sft(DatasetKind.Generic, path, new DatasetLoadOptions { Columns = new ColumnMapping("question", "answer", "context"), LabelColumn = "topic" });

        Assert.Equal([new InstructionExample("Q1", "A1"), new InstructionExample("Q2 ctx", "A2")], rows.Select(r => r.Example));
        Assert.Equal(["math", "law"], rows.Select(r => r.Label));
    }

    [Fact]
    public void Generic_without_a_mapping_and_a_kind_of_the_wrong_example_type_are_refused_at_the_call()
    {
        var path = DatasetFixtures.WriteJsonl(PathOf("x.jsonl"), []);

        Assert.Throws<ArgumentException>(() => DatasetLoader.ReadInstructions(DatasetKind.Generic, path));
        Assert.Throws<ArgumentException>(() => DatasetLoader.ReadInstructions(DatasetKind.HhRlhf, path));
        Assert.Throws<ArgumentException>(() => DatasetLoader.ReadPreferences(DatasetKind.Alpaca, path));
        Assert.Throws<ArgumentException>(() => DatasetLoader.ReadInstructions(DatasetKind.Alpaca, path, new DatasetLoadOptions { SkipBad = true }));
    }

    [Fact]
    public void Parquet_with_many_row_groups_reads_every_row_in_order_and_names_the_bad_row()
    {
        var rows = Enumerable.Range(0, 300).Select(i => new Dictionary<string, object?>
        {
            ["input"] = $"news {i}",
            ["output"] = i == 130 ? null : "neutral",
            ["instruction"] = "q",
        }).ToList();
        var path = DatasetFixtures.WriteParquet(PathOf("groups.parquet"), DatasetFixtures.FinGptSchema, rows, rowGroupSize: 64);

        var e = Assert.Throws<DataFormatException>(() => Sft(DatasetKind.FinGptSentiment, path));
        Assert.Equal(130, e.ElementIndex);
        Assert.Equal("output", e.Field);
        Assert.Equal("expected a string, got Null", e.Problem);

        var report = new DataReadReport();
        var read = Sft(DatasetKind.FinGptSentiment, path, new DatasetLoadOptions { SkipBad = true }, report);
        Assert.Equal(Enumerable.Range(0, 300).Where(i => i != 130).Select(i => $"q news {i}"), read.Select(r => r.Example.Instruction));
        Assert.Equal(299, report.RecordsRead);
        Assert.Equal(1, report.RecordsSkipped);
    }

    [Fact]
    public void A_missing_column_names_the_file_the_record_and_the_column()
    {
        var schema = new ParquetSchema(new DataField<string>("input"), new DataField<string>("instruction"));
        var path = DatasetFixtures.WriteParquet(PathOf("nooutput.parquet"), schema, [new() { ["input"] = "x", ["instruction"] = "y" }]);

        var e = Assert.Throws<DataFormatException>(() => Sft(DatasetKind.FinGptSentiment, path));

        Assert.Equal($"{path}: row 0: field 'output': missing", e.Message);
    }

    [Fact]
    public void Malformed_line_in_a_gzipped_jsonl_names_the_line_and_skip_bad_counts_it()
    {
        var good = System.Text.Json.JsonSerializer.Serialize(new { chosen = DatasetFixtures.HhRows[0].Chosen, rejected = DatasetFixtures.HhRows[0].Rejected });
        var path = PathOf("train.jsonl.gz");
        using (var file = File.Create(path))
        using (var gzip = new System.IO.Compression.GZipStream(file, System.IO.Compression.CompressionLevel.Fastest))
            gzip.Write(System.Text.Encoding.UTF8.GetBytes($"{good}\n{good}\n{{\"chosen\": \"oops\n{good}\n"));

        var e = Assert.Throws<DataFormatException>(() => Dpo(DatasetKind.HhRlhf, path));
        Assert.Equal(3, e.LineNumber);
        Assert.Contains($"{path}: line 3: malformed JSON", e.Message);

        var report = new DataReadReport();
        Assert.Equal(3, Dpo(DatasetKind.HhRlhf, path, new DatasetLoadOptions { SkipBad = true }, report).Count);
        Assert.Equal(1, report.RecordsSkipped);
        Assert.Equal(3, report.SkippedErrors[0].LineNumber);
    }

    [Fact]
    public void A_requested_label_column_that_a_record_lacks_is_a_bad_record()
    {
        var path = DatasetFixtures.WriteJsonl(PathOf("lab.jsonl"),
        [
            new { instruction = "a", input = "", output = "1", topic = "x" },
            new { instruction = "b", input = "", output = "2" },
        ]);
        var report = new DataReadReport();

        var e = Assert.Throws<DataFormatException>(() => Sft(DatasetKind.Alpaca, path, new DatasetLoadOptions { LabelColumn = "topic" }));
        var rows = Sft(DatasetKind.Alpaca, path, new DatasetLoadOptions { LabelColumn = "topic", SkipBad = true }, report);

        Assert.Equal(2, e.LineNumber);
        Assert.Equal("topic", e.Field);
        Assert.Single(rows);
        Assert.Equal(1, report.RecordsSkipped);
    }

    [Fact]
    public void Content_decides_the_format_not_the_extension()
    {
        var parquet = DatasetFixtures.WriteFinGptParquet(PathOf("really-parquet.json"));

        Assert.Equal(6, Sft(DatasetKind.FinGptSentiment, parquet).Count);
        var garbage = _dir.File("garbage.jsonl", "hello");
        var e = Assert.Throws<DataFormatException>(() => Sft(DatasetKind.Alpaca, garbage));
        Assert.Contains("expected Parquet", e.Problem);
    }

    [Fact]
    public void Rows_stream_before_later_lines_are_read()
    {
        // If the loader read the whole file first, the broken last line would throw before the first row.
        var path = _dir.File("lazy.jsonl", "{\"instruction\":\"a\",\"input\":\"\",\"output\":\"1\"}\n{broken\n");

        var first = DatasetLoader.ReadInstructions(DatasetKind.Alpaca, path).First();

        Assert.Equal(new InstructionExample("a", "1"), first.Example);
    }

    [Fact]
    public void Every_record_is_read_skipped_or_counted_as_a_duplicate()
    {
        var path = DatasetFixtures.WriteJsonl(PathOf("math.jsonl"),
        [
            new { source = "s1", output = "o", instruction = "i1" },
            new { source = "s1", output = "o", instruction = "i1" },
            new { source = "s2", output = 3, instruction = "i2" },
            new { source = "s2", output = "o", instruction = "i3" },
        ]);
        var report = new DataReadReport();

        var rows = Sft(DatasetKind.MathInstruct, path, new DatasetLoadOptions { SkipBad = true }, report);

        Assert.Equal(2, rows.Count);
        Assert.Equal((2, 1, 1), (report.RecordsRead, report.RecordsSkipped, report.RecordsDeduplicated));
        Assert.Equal("output", report.SkippedErrors.Single().Field);
    }

    [Theory]
    [InlineData("fingpt-sentiment", DatasetKind.FinGptSentiment)]
    [InlineData("FinGPT/fingpt-sentiment-train", DatasetKind.FinGptSentiment)]
    [InlineData("lucasmccabe-lmi/CodeAlpaca-20k", DatasetKind.CodeAlpaca)]
    [InlineData("sahil2801/codealpaca-20k", DatasetKind.CodeAlpaca)]
    [InlineData("HhRlhf", DatasetKind.HhRlhf)]
    [InlineData("TIGER-Lab/MathInstruct", DatasetKind.MathInstruct)]
    public void Kinds_parse_from_cli_names_enum_names_and_hub_ids(string name, DatasetKind kind) =>
        Assert.Equal(kind, DatasetKinds.Parse(name));

    [Fact]
    public void Unknown_kind_lists_the_known_names()
    {
        var e = Assert.Throws<ArgumentException>(() => DatasetKinds.Parse("imagenet"));
        Assert.Contains("ultrafeedback", e.Message);
    }
}
