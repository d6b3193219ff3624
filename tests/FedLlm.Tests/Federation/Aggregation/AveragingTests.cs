using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation.Aggregation;

public class AveragingTests
{
    static ClientTensors Client(string id, params double[] flat) => new(id, Adapter(flat));

    static readonly ClientTensors[] Three =
    {
        Client("a", 1, 2, 3, 4, 5),
        Client("b", -1, 0, 1, 0, -1),
        Client("c", 4, 4, 0, 8, 2),
    };

    [Fact]
    public void Weighted_mean_normalises_the_weights()
    {
        // Weights 1, 2, 5 → p = 1/8, 2/8, 5/8:
        //   [1, 2, 3, 4, 5]/8 + [−2, 0, 2, 0, −2]/8 + [20, 20, 0, 40, 10]/8 = [19, 22, 5, 44, 13]/8
        var mean = Averaging.WeightedMean(Three, new[] { 1.0, 2.0, 5.0 });
        AssertClose(new[] { 19 / 8.0, 22 / 8.0, 5 / 8.0, 44 / 8.0, 13 / 8.0 }, Flat(mean), 1e-6, "weighted mean");
    }

    [Fact]
    public void Mean_weighs_every_client_alike()
    {
        // ([1, 2, 3, 4, 5] + [−1, 0, 1, 0, −1] + [4, 4, 0, 8, 2]) / 3 = [4, 6, 4, 12, 6]/3
        var mean = Averaging.Mean(Three);
        AssertClose(new[] { 4 / 3.0, 2.0, 4 / 3.0, 4.0, 2.0 }, Flat(mean), 1e-6, "mean");
    }

    [Fact]
    public void Weighted_sum_does_not_normalise()
    {
        // 0.25·a + 0.25·b = [0, 0.5, 1, 1, 1]; the coefficients sum to 0.5, so a mean would double this.
        var sum = Averaging.WeightedSum(Three[..2], new[] { 0.25, 0.25 });
        AssertClose(new[] { 0.0, 0.5, 1.0, 1.0, 1.0 }, Flat(sum), 1e-7, "weighted sum");
    }

    [Fact]
    public void Weighted_mean_of_differences_is_the_pseudo_gradient()
    {
        // x = [1, 1, 1, 1, 1]; weights 1, 3 on a and c: Δ = ¼·(a − x) + ¾·(c − x)
        //   = ¼·[0, 1, 2, 3, 4] + ¾·[3, 3, −1, 7, 1] = [2.25, 2.5, −0.25, 6, 1.75]
        var x = Adapter(new[] { 1.0, 1.0, 1.0, 1.0, 1.0 });
        var delta = Averaging.WeightedMeanOfDifferences(new[] { Three[0], Three[2] }, new[] { 1.0, 3.0 }, x);
        AssertClose(new[] { 2.25, 2.5, -0.25, 6.0, 1.75 }, Flat(delta), 1e-6, "Δ");
    }

    [Fact]
    public void Difference_subtracts_per_key()
    {
        var difference = TensorMaps.Difference(Three[0].Tensors, Three[1].Tensors);
        AssertClose(new[] { 2.0, 2.0, 2.0, 4.0, 6.0 }, Flat(difference), 0, "a − b");
        Assert.Throws<ArgumentException>(() => TensorMaps.Difference(Three[0].Tensors, new Dictionary<string, Tensor> { [KeyA] = zeros(1, 2) }));
    }

    [Fact]
    public void Summation_order_is_by_client_id_so_list_order_changes_no_bit()
    {
        // Values whose float32 sum depends on the order: 1e8, 1, −1e8 in float32 gives 0 or 1 depending on grouping.
        var big = new[]
        {
            Client("x", 1e8, 1e8, 1e8, 1e8, 1e8),
            Client("y", 1, 1, 1, 1, 1),
            Client("z", -1e8, -1e8, -1e8, -1e8, -1e8),
        };
        var ones = new[] { 1.0, 1.0, 1.0 };
        var reference = Flat(Averaging.WeightedSum(big, ones));
        foreach (var permutation in new[] { new[] { 2, 1, 0 }, new[] { 1, 0, 2 }, new[] { 0, 2, 1 } })
            Assert.Equal(reference, Flat(Averaging.WeightedSum(permutation.Select(i => big[i]).ToArray(), ones)));
        // The grouping matters for this input, so the test would catch an order-dependent sum.
        Assert.NotEqual(
            (1e8f + -1e8f) + 1f,
            (1e8f + 1f) + -1e8f);
    }

    [Fact]
    public void Mismatches_name_the_client_and_the_key()
    {
        var wrongShape = new ClientTensors("b", new Dictionary<string, Tensor>
        {
            [KeyA] = zeros(2, 1),
            [KeyB] = zeros(3, 1),
        });
        var error = Assert.Throws<AggregationException>(() => Averaging.Mean(new[] { Three[0], wrongShape }));
        Assert.Equal(("b", KeyA), (error.ClientId, error.Key));
        Assert.Contains("'b'", error.Message);
        Assert.Contains(KeyA, error.Message);

        var duplicate = Assert.Throws<AggregationException>(() => Averaging.Mean(new[] { Three[0], Three[0] }));
        Assert.Equal("a", duplicate.ClientId);

        var negative = Assert.Throws<AggregationException>(() => Averaging.WeightedMean(Three[..2], new[] { 1.0, -1.0 }));
        Assert.Equal("b", negative.ClientId);
        Assert.Throws<AggregationException>(() => Averaging.WeightedMean(Three[..2], new[] { 0.0, 0.0 }));
        Assert.Throws<ArgumentException>(() => Averaging.WeightedMean(Three, new[] { 1.0 }));
        Assert.Throws<ArgumentException>(() => Averaging.Mean(Array.Empty<ClientTensors>()));
    }

    [Fact]
    public void Example_counts_become_weights_and_negative_counts_are_rejected()
    {
        var updates = new[] { new ClientUpdate("a", Adapter(X0), 7), new ClientUpdate("b", Adapter(X0), 0) };
        Assert.Equal(new[] { 7.0, 0.0 }, Averaging.ExampleCounts(updates));
        var error = Assert.Throws<AggregationException>(() => Averaging.ExampleCounts(new[] { new ClientUpdate("n", Adapter(X0), -1) }));
        Assert.Equal("n", error.ClientId);
    }

    [Fact]
    public void Find_mismatch_reports_missing_extra_shape_and_dtype()
    {
        var global = Adapter(X0);
        Assert.Null(TensorMaps.FindMismatch(global, Adapter(X0)));
        Assert.Equal(KeyB, TensorMaps.FindMismatch(global, new Dictionary<string, Tensor> { [KeyA] = zeros(1, 2) })!.Value.Key);
        var extra = Adapter(X0);
        extra["extra"] = zeros(1);
        Assert.Equal(("extra", "is not in the global adapter"), TensorMaps.FindMismatch(global, extra));
        Assert.Contains("shape", TensorMaps.FindMismatch(global, Adapter(X0).With(KeyA, zeros(2)))!.Value.Problem);
        Assert.Contains("dtype", TensorMaps.FindMismatch(global, Adapter(X0).With(KeyA, zeros(new long[] { 1, 2 }, ScalarType.Float64)))!.Value.Problem);
    }

    [Fact]
    public void Working_type_widens_half_precision_and_rejects_integers()
    {
        Assert.Equal(ScalarType.Float32, TensorMaps.WorkingType(ScalarType.BFloat16));
        Assert.Equal(ScalarType.Float32, TensorMaps.WorkingType(ScalarType.Float32));
        Assert.Equal(ScalarType.Float64, TensorMaps.WorkingType(ScalarType.Float64));
        Assert.Throws<ArgumentException>(() => TensorMaps.WorkingType(ScalarType.Int64));
    }
}

internal static class AdapterEdits
{
    public static Dictionary<string, Tensor> With(this Dictionary<string, Tensor> adapter, string key, Tensor value)
    {
        adapter[key] = value;
        return adapter;
    }
}
