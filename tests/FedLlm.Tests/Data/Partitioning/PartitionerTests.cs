using FedLlm.Data.Partitioning;

namespace FedLlm.Tests.Data.Partitioning;

public sealed class PartitionerTests
{
    /// <summary>Unbalanced labels: 50% "a", 30% "b", 15% "c", 5% "d", in a fixed interleaved order.</summary>
    private static string?[] Labels(int n) => Enumerable.Range(0, n).Select(i => (i % 20) switch
    {
        < 10 => "a",
        < 16 => "b",
        < 19 => "c",
        _ => "d",
    }).ToArray<string?>();

    public static TheoryData<string> Schemes => ["iid", "iid-strided", "dirichlet-0.1", "dirichlet-1", "shards-2", "quantity-0.5"];

    private static IPartitioner Create(string scheme) => scheme switch
    {
        "iid" => new IidPartitioner(),
        "iid-strided" => new IidPartitioner(strided: true),
        "dirichlet-0.1" => new DirichletPartitioner(0.1),
        "dirichlet-1" => new DirichletPartitioner(1.0),
        "shards-2" => new ShardPartitioner(2),
        "quantity-0.5" => new QuantitySkewPartitioner(0.5),
        _ => throw new ArgumentException(scheme),
    };

    [Theory]
    [MemberData(nameof(Schemes))]
    public void Every_example_goes_to_exactly_one_client_and_the_seed_fixes_the_result(string scheme)
    {
        var labels = Labels(997);
        var partitioner = Create(scheme);

        foreach (var seed in new ulong[] { 0, 1, 2023 })
        {
            var first = partitioner.Partition(labels, 7, seed);
            var again = partitioner.Partition(labels, 7, seed);

            // ClientPartition's constructor already refuses overlaps and gaps; check again independently.
            Assert.Equal(Enumerable.Range(0, 997), first.ClientIndices.SelectMany(c => c).Order());
            Assert.Equal(first.ClientIndices, again.ClientIndices);
        }

        Assert.NotEqual(partitioner.Partition(labels, 7, 1).ClientIndices, partitioner.Partition(labels, 7, 2).ClientIndices);
    }

    [Fact]
    public void Iid_sizes_differ_by_at_most_one_and_strided_is_openfedllm_shard()
    {
        var labels = new string?[103];

        var blocks = new IidPartitioner().Partition(labels, 10, 7);
        var strided = new IidPartitioner(strided: true, shuffle: false).Partition(labels, 10, 7);

        Assert.Equal([11, 11, 11, 10, 10, 10, 10, 10, 10, 10], blocks.ClientIndices.Select(c => c.Length));
        // datasets 2.13 shard(num_shards=10, index=3, contiguous=False): rows 3, 13, 23, ...
        Assert.Equal(Enumerable.Range(0, 11).Select(j => 2 + 10 * j), strided.ClientIndices[2]);
        Assert.Equal(Enumerable.Range(0, 10).Select(j => 3 + 10 * j), strided.ClientIndices[3]);
        Assert.Equal(Enumerable.Range(0, 10).Select(j => 9 + 10 * j), strided.ClientIndices[9]);
    }

    [Fact]
    public void Smaller_alpha_gives_more_label_skew()
    {
        var labels = Labels(4000);

        double MeanDistance(double alpha) => Enumerable.Range(0, 5).Average(seed =>
        {
            var partition = new DirichletPartitioner(alpha).Partition(labels, 10, (ulong)seed);
            return partition.ClientIndices.Where(c => c.Length > 0).Average(c => TotalVariation(c.Select(i => labels[i]!), labels!));
        });

        var skewed = MeanDistance(0.1);
        var mild = MeanDistance(1.0);
        var nearIid = MeanDistance(1000.0);

        Assert.True(skewed > mild && mild > nearIid, $"TV distances: α=0.1 {skewed:F3}, α=1 {mild:F3}, α=1000 {nearIid:F3}");
        Assert.True(nearIid < 0.05);
        Assert.True(skewed > 0.4);
    }

    [Fact]
    public void Dirichlet_respects_the_minimum_size_and_gives_up_with_a_clear_message()
    {
        var labels = Labels(200);

        var partition = new DirichletPartitioner(0.1, minExamplesPerClient: 10).Partition(labels, 8, 4);
        Assert.All(partition.ClientIndices, c => Assert.True(c.Length >= 10));

        var e = Assert.Throws<InvalidOperationException>(() => new DirichletPartitioner(0.01, minExamplesPerClient: 24, maxAttempts: 5).Partition(labels, 8, 4));
        Assert.Contains("α=0.01", e.Message);
    }

    [Fact]
    public void Shards_give_every_client_exactly_k_distinct_labels()
    {
        var labels = Enumerable.Range(0, 600).Select(i => $"L{i % 6}").ToArray<string?>();

        var partition = new ShardPartitioner(2).Partition(labels, 5, 11);

        Assert.All(partition.ClientIndices, c => Assert.Equal(2, c.Select(i => labels[i]).Distinct().Count()));
    }

    [Fact]
    public void Shards_refuse_to_leave_labels_without_a_holder()
    {
        var labels = Enumerable.Range(0, 60).Select(i => $"L{i % 6}").ToArray<string?>();

        Assert.Throws<ArgumentException>(() => new ShardPartitioner(1).Partition(labels, 5, 1));
        Assert.Throws<ArgumentException>(() => new ShardPartitioner(7).Partition(labels, 5, 1));
    }

    [Fact]
    public void Quantity_skew_makes_sizes_unequal_but_keeps_label_mixes_close()
    {
        var labels = Labels(5000);

        var partition = new QuantitySkewPartitioner(0.5).Partition(labels, 10, 3);
        var sizes = partition.ClientIndices.Select(c => c.Length).ToArray();

        Assert.True(sizes.Max() > 3 * sizes.Min(), string.Join(",", sizes));
        Assert.All(partition.ClientIndices.Where(c => c.Length >= 300), c => Assert.True(TotalVariation(c.Select(i => labels[i]!), labels!) < 0.1));
    }

    [Fact]
    public void Label_based_schemes_refuse_unlabeled_examples()
    {
        var labels = new string?[] { "a", null, "b" };

        var e = Assert.Throws<ArgumentException>(() => new DirichletPartitioner(1).Partition(labels, 2, 0));
        Assert.Contains("1 of 3 examples have no label", e.Message);
        Assert.Equal(3, new IidPartitioner().Partition(labels, 2, 0).ExampleCount);
    }

    [Fact]
    public void ClientPartition_refuses_overlaps_and_gaps()
    {
        Assert.Throws<ArgumentException>(() => new ClientPartition([[0, 1], [1]], 2));
        Assert.Throws<ArgumentException>(() => new ClientPartition([[0], []], 2));
        Assert.Throws<ArgumentException>(() => new ClientPartition([[0, 2]], 2));
    }

    [Fact]
    public void Options_parse_cli_names_and_build_the_scheme()
    {
        Assert.Equal(PartitionKind.Shards, PartitionOptions.ParseKind("pathological"));
        Assert.IsType<DirichletPartitioner>(new PartitionOptions { Kind = PartitionOptions.ParseKind("dirichlet"), Alpha = 0.3 }.Create());
        Assert.Throws<ArgumentOutOfRangeException>(() => new PartitionOptions { Kind = PartitionKind.Dirichlet, Alpha = 0 }.Create());
        Assert.Throws<ArgumentException>(() => PartitionOptions.ParseKind("random"));
    }

    internal static double TotalVariation(IEnumerable<string> part, IReadOnlyList<string> all)
    {
        var p = part.GroupBy(x => x).ToDictionary(g => g.Key, g => (double)g.Count());
        var q = all.GroupBy(x => x).ToDictionary(g => g.Key, g => (double)g.Count());
        var pn = p.Values.Sum();
        return 0.5 * q.Keys.Sum(k => Math.Abs(p.GetValueOrDefault(k) / pn - q[k] / all.Count));
    }
}
