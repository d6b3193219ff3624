using System.IO.Compression;
using System.Text;
using FedLlm.Data;
using FedLlm.Data.Datasets;
using Xunit;

namespace FedLlm.Tests.Data.Integrity;

public sealed class GzipIntegrityTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string Record(int i) => $"{{\"instruction\":\"question {i} {new string('q', i % 50)}\",\"input\":\"\",\"output\":\"answer {i}\"}}";

    /// <summary>Gzips records, flushing after each so that each ends on a byte of the compressed file; returns those offsets.</summary>
    private string WriteFlushedGz(string name, int records, out List<long> recordEnds)
    {
        var path = Path.Combine(_dir.Path, name);
        recordEnds = [];
        using var file = File.Create(path);
        using (var gzip = new GZipStream(file, CompressionLevel.Optimal, leaveOpen: true))
        {
            for (var i = 0; i < records; i++)
            {
                gzip.Write(Encoding.UTF8.GetBytes(Record(i) + "\n"));
                gzip.Flush();
                recordEnds.Add(file.Position);
            }
        }

        return path;
    }

    private static void Cut(string path, long length)
    {
        using var file = new FileStream(path, FileMode.Open);
        file.SetLength(length);
    }

    [Fact]
    public void A_complete_file_reads_every_record()
    {
        var path = WriteFlushedGz("ok.jsonl.gz", 200, out _);

        Assert.Equal(200, AlpacaReader.Read(path).Count());
    }

    [Fact]
    public void Cut_at_a_record_boundary_is_an_error_not_a_shorter_file()
    {
        // The decompressed data ends exactly after record 120's newline: a reader trusting GZipStream sees 120 good records.
        var path = WriteFlushedGz("cut.jsonl.gz", 200, out var ends);
        Cut(path, ends[119]);

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());

        Assert.Equal(path, e.FilePath);
        Assert.Equal(121, e.LineNumber);
        Assert.Contains("truncated gzip data", e.Problem);
        Assert.Contains($"byte {ends[119]:N0}", e.Problem);
    }

    [Fact]
    public void Cut_inside_a_record_is_an_error_even_with_skip_bad_not_one_skipped_record()
    {
        var path = WriteFlushedGz("mid.jsonl.gz", 200, out var ends);
        Cut(path, (ends[99] + ends[100]) / 2);
        var report = new DataReadReport();

        var e = Assert.Throws<DataFormatException>(
            () => AlpacaReader.Read(path, new AlpacaReadOptions { SkipBad = true }, report).Count());

        Assert.Contains("truncated gzip data", e.Message);
        Assert.Equal(0, report.RecordsSkipped);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(8)]
    public void Cut_inside_the_trailer_is_an_error(int bytesCut)
    {
        var path = WriteFlushedGz("trailer.jsonl.gz", 50, out _);
        Cut(path, new FileInfo(path).Length - bytesCut);

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());

        Assert.Contains("truncated gzip data", e.Message);
    }

    [Fact]
    public void A_wrong_crc_is_an_error()
    {
        var path = WriteFlushedGz("crc.jsonl.gz", 50, out _);
        var bytes = File.ReadAllBytes(path);
        bytes[^8] ^= 0xFF;
        File.WriteAllBytes(path, bytes);

        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());

        Assert.Contains("CRC-32", e.Message);
    }

    [Fact]
    public void Concatenated_members_read_as_one_file_and_a_cut_second_member_is_caught()
    {
        // gzip allows several members back to back (`cat a.gz b.gz`); each has its own trailer.
        var first = WriteFlushedGz("a.gz", 30, out _);
        var second = WriteFlushedGz("b.gz", 40, out var secondEnds);
        var path = Path.Combine(_dir.Path, "ab.jsonl.gz");
        File.WriteAllBytes(path, [.. File.ReadAllBytes(first), .. File.ReadAllBytes(second)]);

        Assert.Equal(70, AlpacaReader.Read(path).Count());

        Cut(path, new FileInfo(first).Length + secondEnds[9]);
        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(path).Count());
        Assert.Equal(41, e.LineNumber);
    }

    [Fact]
    public void A_large_file_spanning_many_inflater_chunks_reads_whole()
    {
        // Incompressible text makes the compressed file far larger than the inflater's input chunk, so the trailer
        // search must look in the last chunk only, wherever the member ends.
        var random = new Random(7);
        var path = Path.Combine(_dir.Path, "large.jsonl.gz");
        using (var gzip = new GZipStream(File.Create(path), CompressionLevel.Fastest))
            for (var i = 0; i < 3000; i++)
            {
                var noise = string.Concat(Enumerable.Range(0, 80).Select(_ => (char)random.Next('a', 'z' + 1)));
                gzip.Write(Encoding.UTF8.GetBytes($"{{\"instruction\":\"{noise}\",\"input\":\"\",\"output\":\"{i}\"}}\n"));
            }

        Assert.Equal(3000, AlpacaReader.Read(path).Count());
    }

    [Fact]
    public void Crc32_matches_the_standard_check_value()
    {
        Assert.Equal(0xCBF43926u, Crc32.Append(0, "123456789"u8));
        Assert.Equal(Crc32.Append(0, "123456789"u8), Crc32.Append(Crc32.Append(0, "1234"u8), "56789"u8));
    }
}
