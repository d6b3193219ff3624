using FedLlm.Data.Partitioning;
using FedLlm.Data.Statistics;

namespace FedLlm.Tests.Data.Statistics;

public sealed class PartitionReportTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Counts_histograms_tokens_and_distances_per_client()
    {
        string?[] labels = ["a", "a", "b", "a", "c", "b"];
        var partition = new ClientPartition([[0, 1, 2], [3, 4, 5]], 6);

        var report = PartitionReport.Compute(partition, labels, [10, 20, 30, 40, 50, 60], "test");

        Assert.Equal(["a", "b", "c"], report.Labels);
        Assert.Equal([3, 2, 1], report.TotalLabelCounts);
        Assert.Equal([2, 1, 0], report.Clients[0].LabelCounts);
        Assert.Equal([1, 1, 1], report.Clients[1].LabelCounts);
        Assert.Equal(60, report.Clients[0].Tokens);
        Assert.Equal(210, report.TotalTokens);
        // Client 0: (2/3, 1/3, 0) against (1/2, 1/3, 1/6): TV = (1/6 + 0 + 1/6) / 2.
        Assert.Equal(1.0 / 6, report.Clients[0].LabelDistance!.Value, 12);
    }

    [Fact]
    public void Unlabeled_data_has_no_histogram_and_no_distance()
    {
        var report = PartitionReport.Compute(new ClientPartition([[0], [1, 2]], 3), new string?[3], null, "iid");

        Assert.Empty(report.Labels);
        Assert.Null(report.Clients[1].LabelDistance);
        Assert.Null(report.TotalTokens);
        Assert.Equal(2, report.Clients[1].Examples);
    }

    [Fact]
    public void Chart_is_a_png_wide_enough_for_bars_and_legend()
    {
        var labels = Enumerable.Range(0, 300).Select(i => $"label{i % 12}").ToArray<string?>();
        var partition = new DirichletPartitioner(0.5).Partition(labels, 10, 1);
        var report = PartitionReport.Compute(partition, labels, null, "dirichlet(α=0.5)");
        var path = Path.Combine(_dir.Path, "sub", "chart.png");

        PartitionChart.WritePng(report, path, "test chart");

        var bytes = File.ReadAllBytes(path);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], bytes[..4]);
        // IHDR: width and height as big-endian ints at offsets 16 and 20.
        var width = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16));
        Assert.Equal(240 + 48 * 10 + 280, width);
        Assert.Equal(540, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
    }
}
