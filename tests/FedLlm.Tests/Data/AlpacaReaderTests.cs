using Xunit;
using System.Text;
using FedLlm.Data;

namespace FedLlm.Tests.Data;

public sealed class AlpacaReaderTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private const string Jsonl =
        """
        {"instruction":"Give three tips.","input":"","output":"Eat, sleep, run."}

        {"instruction":"Translate to French.","input":"Good morning","output":"Bonjour","text":"ignored"}
        {"instruction":"Keep whitespace input.","input":" ","output":"ok"}
        """;

    private static readonly InstructionExample[] Expected =
    [
        new("Give three tips.", "Eat, sleep, run."),
        new("Translate to French. Good morning", "Bonjour"),
        // alpaca_format tests input == "" only, so a single space is joined with a space: two spaces.
        new("Keep whitespace input.  ", "ok"),
    ];

    [Fact]
    public void Jsonl_is_read_with_alpaca_format_joining_and_blank_lines_skipped()
    {
        var path = _dir.File("data.jsonl", Jsonl);
        var report = new DataReadReport();

        var examples = AlpacaReader.Read(path, report: report).ToList();

        Assert.Equal(Expected, examples);
        Assert.Equal(3, report.RecordsRead);
        Assert.Equal(0, report.RecordsSkipped);
    }

    [Fact]
    public void Json_array_gives_the_same_examples_as_jsonl()
    {
        var path = _dir.File("data.json",
            """
            [
              {"instruction": "Give three tips.", "input": "", "output": "Eat, sleep, run."},
              {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour", "text": "ignored"},
              {"instruction": "Keep whitespace input.", "input": " ", "output": "ok"}
            ]
            """);

        Assert.Equal(Expected, AlpacaReader.Read(path).ToList());
        Assert.Equal(Expected, AlpacaReader.Read(path, new AlpacaReadOptions { Layout = AlpacaFileLayout.JsonArray }).ToList());
    }

    [Fact]
    public void Layout_is_detected_from_content_not_extension_and_a_BOM_is_skipped()
    {
        // Hugging Face exports JSON Lines as ".json"; some editors add a BOM.
        var path = Path.Combine(_dir.Path, "lines.json");
        File.WriteAllText(path, Jsonl, new UTF8Encoding(encoderShouldEmitUTF8Identifier: true));

        Assert.Equal(Expected, AlpacaReader.Read(path).ToList());
    }

    [Fact]
    public void Malformed_jsonl_line_names_file_and_physical_line()
    {
        var path = _dir.File("bad.jsonl",
            "{\"instruction\":\"a\",\"input\":\"\",\"output\":\"b\"}\n\n{\"instruction\": \"a\", \n");

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).ToList());

        Assert.Equal(path, e.FilePath);
        Assert.Equal(3, e.LineNumber);
        Assert.Null(e.ElementIndex);
        Assert.Null(e.Field);
        Assert.Contains($"{path}: line 3: malformed JSON", e.Message);
    }

    [Theory]
    [InlineData("{\"instruction\":\"a\",\"input\":\"\"}", "output", "missing")]
    [InlineData("{\"instruction\":\"a\",\"input\":3,\"output\":\"b\"}", "input", "expected a string, got Number")]
    [InlineData("{\"instruction\":null,\"input\":\"\",\"output\":\"b\"}", "instruction", "expected a string, got Null")]
    [InlineData("{\"input\":\"\",\"output\":\"b\"}", "instruction", "missing")]
    public void Missing_or_non_string_field_is_named_with_its_line(string badLine, string field, string problem)
    {
        var path = _dir.File("fields.jsonl", "{\"instruction\":\"a\",\"input\":\"\",\"output\":\"b\"}\n" + badLine + "\n");

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).ToList());

        Assert.Equal(2, e.LineNumber);
        Assert.Equal(field, e.Field);
        Assert.Equal(problem, e.Problem);
        Assert.Equal($"{path}: line 2: field '{field}': {problem}", e.Message);
    }

    [Fact]
    public void Json_array_errors_name_the_element_index()
    {
        var path = _dir.File("arr.json",
            """[{"instruction":"a","input":"","output":"b"}, {"instruction":"a","input":"","output":["b"]}]""");

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).ToList());

        Assert.Equal(1, e.ElementIndex);
        Assert.Equal("output", e.Field);
        Assert.Contains("element 1", e.Message);
    }

    [Fact]
    public void Json_array_element_that_is_not_an_object_is_reported()
    {
        var path = _dir.File("arr.json", """[{"instruction":"a","input":"","output":"b"}, "oops"]""");

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).ToList());

        Assert.Equal(1, e.ElementIndex);
        Assert.Null(e.Field);
        Assert.Contains("expected a JSON object, got String", e.Message);
    }

    [Fact]
    public void Json_array_syntax_error_throws_even_with_skip_bad()
    {
        var path = _dir.File("arr.json", "[{\"instruction\":\"a\",\"input\":\"\",\"output\":\"b\"},\n {\"instruction\": }]");
        var report = new DataReadReport();

        var e = Assert.Throws<DataFormatException>(
            () => AlpacaReader.Read(path, new AlpacaReadOptions { SkipBad = true }, report).ToList());

        Assert.Equal(1, e.ElementIndex);
        Assert.Equal(2, e.LineNumber);
    }

    [Fact]
    public void Skip_bad_skips_and_counts_every_bad_record()
    {
        var path = _dir.File("mixed.jsonl", string.Join('\n',
            "{\"instruction\":\"a\",\"input\":\"\",\"output\":\"1\"}",
            "not json",
            "{\"instruction\":\"b\",\"input\":\"\",\"output\":\"2\"}",
            "{\"instruction\":\"c\",\"output\":\"3\"}",
            "[1,2]",
            "{\"instruction\":\"d\",\"input\":\"x\",\"output\":\"4\"}"));
        var report = new DataReadReport();

        var examples = AlpacaReader.Read(path, new AlpacaReadOptions { SkipBad = true }, report).ToList();

        Assert.Equal(["1", "2", "4"], examples.Select(e => e.Response));
        Assert.Equal(3, report.RecordsRead);
        Assert.Equal(3, report.RecordsSkipped);
        Assert.Equal([2L, 4L, 5L], report.SkippedErrors.Select(e => e.LineNumber!.Value));
        Assert.Equal([null, "input", null], report.SkippedErrors.Select(e => e.Field));
    }

    [Fact]
    public void Skip_bad_on_json_array_skips_field_errors()
    {
        var path = _dir.File("arr.json",
            """[{"instruction":"a","input":"","output":"1"}, {"instruction":"a"}, {"instruction":"b","input":"","output":"2"}]""");
        var report = new DataReadReport();

        var examples = AlpacaReader.Read(path, new AlpacaReadOptions { SkipBad = true }, report).ToList();

        Assert.Equal(["1", "2"], examples.Select(e => e.Response));
        Assert.Equal(1, report.RecordsSkipped);
        Assert.Equal(1, report.SkippedErrors[0].ElementIndex);
    }

    [Fact]
    public void Skip_bad_without_a_report_is_refused_so_nothing_is_dropped_unseen()
    {
        var path = _dir.File("x.jsonl", "");

        Assert.Throws<ArgumentException>(() => AlpacaReader.Read(path, new AlpacaReadOptions { SkipBad = true }));
    }

    [Fact]
    public void Records_stream_before_later_lines_are_parsed()
    {
        // If the reader parsed the whole file up front, the bad last line would throw before the first record.
        var path = _dir.File("lazy.jsonl", "{\"instruction\":\"a\",\"input\":\"\",\"output\":\"1\"}\n{broken\n");

        var first = AlpacaReader.Read(path).First();

        Assert.Equal(new InstructionExample("a", "1"), first);
    }

    [Fact]
    public async Task ReadAsync_streams_json_array_elements()
    {
        // ~400 KB, far beyond one read buffer, with a syntax error at the very end: a reader that parsed the whole
        // array before yielding would throw before the first element.
        var elements = Enumerable.Range(0, 5000).Select(i => $"{{\"instruction\":\"q{i}\",\"input\":\"{new string('x', 40)}\",\"output\":\"{i}\"}}");
        var path = _dir.File("big.json", "[" + string.Join(",\n", elements) + ",\n{broken");

        var seen = new List<InstructionExample>();
        await foreach (var example in AlpacaReader.ReadAsync(path))
        {
            seen.Add(example);
            if (seen.Count == 2) break;
        }

        Assert.Equal([new InstructionExample("q0 " + new string('x', 40), "0"), new InstructionExample("q1 " + new string('x', 40), "1")], seen);
        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());
        Assert.Equal(5000, e.ElementIndex);
        Assert.Equal(5001, e.LineNumber);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(170)]
    [InlineData(171)]
    [InlineData(2345)]
    [InlineData(3999)]
    public void Json_array_syntax_error_index_is_exact_across_read_buffers(int bad)
    {
        var elements = Enumerable.Range(0, 4000).Select(i => i == bad
            ? "{\"instruction\": oops}"
            : $"{{\"instruction\":\"q{i}\",\"input\":\"{new string('y', 50)}\",\"output\":\"{i}\"}}");
        var path = _dir.File("bad.json", "[\n" + string.Join(",\n", elements) + "\n]");

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());

        Assert.Equal(bad, e.ElementIndex);
        Assert.Equal(bad + 2, e.LineNumber);
    }

    [Fact]
    public void ReadAll_returns_examples_and_report()
    {
        var path = _dir.File("data.jsonl", Jsonl);

        var result = AlpacaReader.ReadAll(path);

        Assert.Equal(Expected, result.Examples);
        Assert.Equal(3, result.Report.RecordsRead);
    }

    [Fact]
    public void Writer_output_reads_back_unchanged()
    {
        var path = Path.Combine(_dir.Path, "round.jsonl");
        AlpacaRecord[] records = [new("Say \"hi\"", "", "hi\nthere"), new("Name's", "ünï", "✓")];

        AlpacaWriter.WriteJsonl(path, records);

        Assert.Equal(records.Select(r => r.ToInstructionExample()), AlpacaReader.Read(path).ToList());
        Assert.Equal(2, File.ReadAllText(path).Count(c => c == '\n'));
        Assert.Contains("Name's", File.ReadAllText(path));
    }
}
