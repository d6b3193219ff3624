using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Async;
using static FedLlm.Tests.Federation.FederationTestData;

namespace FedLlm.Tests.Federation.Async;

/// <summary>The staleness functions and FedBuff's buffer step against hand-computed numbers, and the virtual clock's order.</summary>
public sealed class StalenessAndBufferTests
{
    [Theory]
    [InlineData(0, 1.0)]
    [InlineData(1, 0.70710678118654752)] // 1/√2
    [InlineData(3, 0.5)]                 // 1/√4
    [InlineData(8, 1.0 / 3)]             // 1/√9
    public void Polynomial_with_a_half_is_one_over_the_root_of_one_plus_staleness(int staleness, double expected) =>
        Assert.Equal(expected, new PolynomialStaleness().Weight(staleness), 15);

    [Fact]
    public void Polynomial_exponent_one_is_the_reciprocal() => Assert.Equal(0.2, new PolynomialStaleness(1).Weight(4), 15);

    [Theory]
    [InlineData(0, 1.0)]
    [InlineData(4, 1.0)]            // up to b = 4 versions count fully
    [InlineData(5, 1.0 / 11)]       // 1 / (10·1 + 1)
    [InlineData(6, 1.0 / 21)]       // 1 / (10·2 + 1)
    public void Hinge_is_one_up_to_the_cutoff_then_falls_hyperbolically(int staleness, double expected) =>
        Assert.Equal(expected, new HingeStaleness(slope: 10, cutoff: 4).Weight(staleness), 15);

    [Fact]
    public void Constant_ignores_staleness_and_every_function_refuses_a_negative_one()
    {
        Assert.Equal(1.0, new ConstantStaleness().Weight(7));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ConstantStaleness().Weight(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PolynomialStaleness().Weight(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new HingeStaleness().Weight(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PolynomialStaleness(-0.5));
    }

    [Fact]
    public void The_options_name_the_function_they_create()
    {
        Assert.IsType<PolynomialStaleness>(new AsyncOptions().CreateWeight());
        Assert.Equal(0.25, new AsyncOptions { Staleness = StalenessKind.Polynomial, StalenessExponent = 1 }.CreateWeight().Weight(3));
        Assert.Equal(1.0 / 3, new AsyncOptions { Staleness = StalenessKind.Hinge, HingeSlope = 1, HingeCutoff = 1 }.CreateWeight().Weight(3), 15);
        Assert.Equal(StalenessKind.Hinge, AsyncOptions.ParseStaleness(" Hinge "));
        Assert.Contains("expected constant, polynomial or hinge", Assert.Throws<ArgumentException>(() => AsyncOptions.ParseStaleness("linear")).Message);
    }

    [Fact]
    public void The_buffer_step_weights_a_stale_delta_by_its_staleness_and_divides_by_k()
    {
        // Prepare: x, one fresh delta (τ = 0, weight 1) and one stale by one version (weight 1/√2), η_g = 0.5.
        double[] x = [1.0, -2.0, 0.5, 0.0, 3.0], fresh = [0.4, 0.2, -0.6, 1.0, 0.0], stale = [-1.0, 2.0, 0.5, 0.25, -3.0];
        using var global = new DisposableAdapter(Adapter(x));
        using var d1 = new DisposableAdapter(Adapter(fresh));
        using var d2 = new DisposableAdapter(Adapter(stale));
        double w2 = new PolynomialStaleness().Weight(1);

        // Execute
        var next = FedBuffAggregation.Apply(global.Map, [new ClientTensors("task-b", d1.Map), new ClientTensors("task-a", d2.Map)], [1.0, w2], 0.5);

        // Assert: x + η_g·(1/K)·(1·Δ_fresh + (1/√2)·Δ_stale), K = 2, per coordinate in doubles.
        var expected = x.Select((xi, i) => xi + 0.5 * 0.5 * (fresh[i] + stale[i] / Math.Sqrt(2))).ToArray();
        var actual = Flat(next);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 6);
        Assert.NotEqual(x[1] + 0.5 * 0.5 * (fresh[1] + stale[1]), actual[1], 3); // an unweighted mean would differ
        AdapterTensorsDispose(next);
    }

    [Fact]
    public void The_buffer_step_refuses_repeated_ids_and_foreign_layouts()
    {
        using var global = new DisposableAdapter(Adapter([1.0, 2, 3, 4, 5]));
        using var d = new DisposableAdapter(Adapter([0.0, 0, 0, 0, 1]));
        Assert.Throws<AggregationException>(() => FedBuffAggregation.Apply(global.Map, [new("t", d.Map), new("t", d.Map)], [1, 1], 1));
        using var wrong = new DisposableAdapter(Adapter([0.0, 0], [1.0, 2, 3], TorchSharp.torch.ScalarType.Float64));
        Assert.Throws<AggregationException>(() => FedBuffAggregation.Apply(global.Map, [new("t", wrong.Map)], [1], 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => FedBuffAggregation.Apply(global.Map, [new("t", d.Map)], [1], 0));
    }

    [Fact]
    public void The_clock_takes_the_earliest_finish_and_breaks_ties_by_start_order()
    {
        var clock = new VirtualClock<string>();
        clock.Start("slow", 5, sequence: 0);
        clock.Start("b", 2, sequence: 2);
        clock.Start("a", 2, sequence: 1);
        clock.Start("fast", 1, sequence: 3);
        Assert.Equal(["fast", "a", "b", "slow"], clock.InFlight().Select(t => t.Item));

        Assert.Equal("fast", clock.Next().Item);
        Assert.Equal(1, clock.Now);
        var later = clock.Start("late", 1, sequence: 4); // started at 1, finishes at 2 too, after a and b
        Assert.Equal((1.0, 2.0), (later.StartedAt, later.FinishesAt));
        Assert.Equal("a", clock.Next().Item);
        Assert.True(clock.HasTaskFinishingNow);
        Assert.Equal("b", clock.Next().Item);
        Assert.Equal("late", clock.Next().Item);
        Assert.False(clock.HasTaskFinishingNow);
        Assert.Equal("slow", clock.Next().Item);
        Assert.Equal(5, clock.Now);
        Assert.Throws<InvalidOperationException>(() => clock.Next());
    }

    static void AdapterTensorsDispose(IReadOnlyDictionary<string, TorchSharp.torch.Tensor> map) => FedLlm.Federation.AdapterTensors.Dispose(map);

    sealed class DisposableAdapter(Dictionary<string, TorchSharp.torch.Tensor> map) : IDisposable
    {
        public Dictionary<string, TorchSharp.torch.Tensor> Map => map;
        public void Dispose() => FedLlm.Federation.AdapterTensors.Dispose(map);
    }
}
