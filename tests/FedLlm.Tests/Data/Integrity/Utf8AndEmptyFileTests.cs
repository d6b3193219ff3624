using System.IO.Compression;
using System.Text;
using FedLlm.Data;
using FedLlm.Data.Datasets;
using FedLlm.Evaluation.Data;
using Parquet.Schema;
using Xunit;

namespace FedLlm.Tests.Data.Integrity;

public sealed class Utf8AndEmptyFileTests : IDisposable
{
    private const string Good = "{\"instruction\":\"a\",\"input\":\"\",\"output\":\"b\"}";
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Bytes(string name, byte[] content)
    {
        var path = Path.Combine(_dir.Path, name);
        File.WriteAllBytes(path, content);
        return path;
    }

    private static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);

    /// <summary>Line 2 holds byte 0xFF inside a string, where a lenient decoder would put U+FFFD.</summary>
    private static byte[] WithBadByte(string prefix) =>
        [.. Utf8(prefix + Good + "\n{\"instruction\":\"x"), 0xFF, .. Utf8("y\",\"input\":\"\",\"output\":\"b\"}\n" + Good + "\n")];

    private static void AssertNoDotNetInternals(string message)
    {
        Assert.DoesNotContain("Parameter '", message);
        Assert.DoesNotContain("System.", message);
        Assert.DoesNotContain("Nullable`1", message);
        Assert.DoesNotContain("   at ", message);
        Assert.DoesNotContain("LineNumber:", message);
    }

    [Fact]
    public void Invalid_utf8_in_jsonl_names_the_line_and_the_byte_offset_and_skip_bad_counts_it()
    {
        var path = Bytes("bad.jsonl", WithBadByte(""));
        var offset = Good.Length + 1 + "{\"instruction\":\"x".Length;

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());
        var report = new DataReadReport();
        var kept = AlpacaReader.Read(path, new AlpacaReadOptions { SkipBad = true }, report).Count();

        Assert.Equal(2, e.LineNumber);
        Assert.Equal($"invalid UTF-8 (byte 0xFF at byte offset {offset}); the file must be UTF-8 encoded", e.Problem);
        Assert.Equal(2, kept);
        Assert.Equal(1, report.RecordsSkipped);
    }

    [Fact]
    public void Invalid_utf8_in_gzipped_jsonl_is_caught_too()
    {
        var path = Path.Combine(_dir.Path, "bad.jsonl.gz");
        using (var gzip = new GZipStream(File.Create(path), CompressionLevel.Optimal)) gzip.Write(WithBadByte(""));

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());

        Assert.Equal(2, e.LineNumber);
        Assert.Contains("invalid UTF-8", e.Message);
    }

    [Fact]
    public void Invalid_utf8_in_a_json_array_names_its_line()
    {
        byte[] content = [.. Utf8("[\n" + Good + ",\n{\"instruction\":\"x"), 0xC3, 0x28, .. Utf8("\",\"input\":\"\",\"output\":\"b\"}\n]")];
        var path = Bytes("bad.json", content);

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());

        Assert.Equal(3, e.LineNumber);
        Assert.Contains("byte 0xC3", e.Problem);
        AssertNoDotNetInternals(e.Message);
    }

    [Fact]
    public void Multibyte_characters_across_read_buffers_are_valid()
    {
        // Thousands of 2-, 3- and 4-byte characters: some sequences must straddle the stream's read boundaries.
        var text = string.Concat(Enumerable.Repeat("é€😀x", 40));
        var elements = Enumerable.Range(0, 2000).Select(i => $"{{\"instruction\":\"{text}{i}\",\"input\":\"\",\"output\":\"{i}\"}}");
        var path = Bytes("multi.json", Utf8("[" + string.Join(",", elements) + "]"));

        var examples = AlpacaReader.Read(path).ToList();

        Assert.Equal(2000, examples.Count);
        Assert.Equal(text + "1999", examples[^1].Instruction);
    }

    [Fact]
    public void Invalid_utf8_in_csv_names_the_line()
    {
        var path = Bytes("mmlu.csv", [.. Utf8("q1,a,b,c,d,A\nq2,"), 0xFF, .. Utf8(",b,c,d,B\n")]);

        var e = Assert.Throws<DataFormatException>(() => CsvRows.Read(path));

        Assert.Equal(2, e.LineNumber);
        Assert.Contains("invalid UTF-8", e.Message);
    }

    [Theory]
    [InlineData("empty.jsonl", "", "the file is empty (0 bytes)")]
    [InlineData("blank.jsonl", "\n  \n\n", "nothing but blank lines")]
    [InlineData("empty.json", "[ ]", "the JSON array is empty")]
    public void Empty_json_files_are_refused_naming_the_file(string name, string content, string problem)
    {
        var path = _dir.File(name, content);

        var alpaca = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());
        var dataset = Assert.Throws<DataFormatException>(() => DatasetLoader.ReadInstructions(DatasetKind.Alpaca, path).Count());
        var eval = Assert.Throws<DataFormatException>(() => EvaluationRecords.ReadAll(path));

        foreach (var e in new[] { alpaca, dataset, eval })
        {
            Assert.StartsWith(path + ": ", e.Message);
            Assert.Contains(problem, e.Message);
            AssertNoDotNetInternals(e.Message);
        }
    }

    [Fact]
    public void Empty_gzip_is_refused()
    {
        var path = Path.Combine(_dir.Path, "empty.jsonl.gz");
        using (var gzip = new GZipStream(File.Create(path), CompressionLevel.Optimal)) gzip.Write("\n \n"u8);

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());

        Assert.Contains("decompresses to nothing", e.Message);
    }

    [Fact]
    public void Empty_parquet_is_refused()
    {
        var schema = new ParquetSchema(new DataField<string>("instruction"), new DataField<string>("input"), new DataField<string>("output"));
        var path = DatasetFixtures.WriteParquet(Path.Combine(_dir.Path, "empty.parquet"), schema, []);

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());

        Assert.Equal($"{path}: the Parquet file has no rows", e.Message);
    }

    [Fact]
    public void Empty_csv_is_refused()
    {
        var path = _dir.File("empty.csv", "");

        var e = Assert.Throws<DataFormatException>(() => CsvRows.Read(path));

        Assert.StartsWith(path + ": the file is empty", e.Message);
    }

    [Fact]
    public void A_file_whose_records_are_all_skipped_is_refused_with_the_first_reason()
    {
        var path = _dir.File("allbad.jsonl", "{\"instruction\":\"a\"}\nnot json\n");
        var report = new DataReadReport();

        var e = Assert.Throws<DataFormatException>(
            () => AlpacaReader.Read(path, new AlpacaReadOptions { SkipBad = true }, report).Count());
        var d = Assert.Throws<DataFormatException>(
            () => DatasetLoader.ReadInstructions(DatasetKind.Alpaca, path, new DatasetLoadOptions { SkipBad = true }, new DataReadReport()).Count());

        Assert.Equal(2, report.RecordsSkipped);
        Assert.Contains("no usable records", e.Message);
        Assert.Contains("line 1: field 'input': missing", e.Message);
        Assert.Contains("no usable records", d.Message);
    }

    [Theory]
    [InlineData("PAR1 this is not parquet at all, though it ends right PAR1")]
    [InlineData("PAR1 garbage that does not end with the magic")]
    [InlineData("PAR1")]
    public void Garbage_parquet_says_not_a_parquet_file(string content)
    {
        var path = _dir.File("garbage.parquet", content);

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());

        Assert.StartsWith($"{path}: not a Parquet file (", e.Message);
        Assert.DoesNotContain("overflow", e.Message, StringComparison.OrdinalIgnoreCase);
        AssertNoDotNetInternals(e.Message);
    }

    [Fact]
    public void Parquet_with_a_plausible_footer_length_but_garbage_metadata_says_not_a_parquet_file()
    {
        byte[] content = [.. Utf8("PAR1"), .. Enumerable.Repeat((byte)0xEE, 40), 20, 0, 0, 0, .. Utf8("PAR1")];
        var path = Bytes("meta.parquet", content);

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());

        Assert.StartsWith($"{path}: not a Parquet file (", e.Message);
        AssertNoDotNetInternals(e.Message);
    }

    [Theory]
    [InlineData("{\"instruction\": oops}", "malformed JSON")]
    [InlineData("{\"instruction\":\"a\",\"instruction\":\"b\",\"input\":\"\",\"output\":\"c\"}", "field 'instruction': appears twice")]
    [InlineData("{\"instruction\":\"a\",\"input\":\"\",\"output\":\"c\"} trailing", "malformed JSON")]
    [InlineData("{\"instruction\":\"\\ud800\",\"input\":\"\",\"output\":\"c\"}", "lone surrogate")]
    [InlineData("{\"instruction\":\"a\",\"input\":\"\",\"output\":", "malformed JSON")]
    public void Json_lines_errors_name_the_line_in_plain_words(string line, string expected)
    {
        var path = _dir.File("e.jsonl", Good + "\n" + line + "\n");

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());

        Assert.Equal(2, e.LineNumber);
        Assert.Contains(expected, e.Message);
        AssertNoDotNetInternals(e.Message);
    }

    [Fact]
    public void Json_array_syntax_error_has_no_parser_internals()
    {
        var path = _dir.File("e.json", "[" + Good + ",\n {\"instruction\": }]");

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());

        Assert.Contains("column", e.Message);
        AssertNoDotNetInternals(e.Message);
    }
}
