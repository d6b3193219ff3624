using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Robust;
using FedLlm.Federation.Strategies;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation.Robust;

public class RobustAggregationTests
{
    static ClientTensors Client(string id, params double[] flat) => new(id, Adapter(flat));

    static readonly ClientTensors[] Five =
    {
        Client("a", 1, 2, 3, 4, 5),
        Client("b", -1, 0, 1, 0, -1),
        Client("c", 4, 4, 0, 8, 2),
        Client("d", 0, 10, 2, 1, 1),
        Client("e", 2, -3, 5, 6, 0),
    };

    static readonly double[] Ones5 = { 1, 1, 1, 1, 1 };

    [Fact]
    public void Median_takes_the_middle_value_per_coordinate()
    {
        // Per coordinate, sorted: [−1,0,1,2,4] [−3,0,2,4,10] [0,1,2,3,5] [0,1,4,6,8] [−1,0,1,2,5] → 1, 2, 2, 4, 1.
        AssertClose(new double[] { 1, 2, 2, 4, 1 }, Flat(CoordinateMedian.Median(Five)), 0, "odd median");
        // Without e: [−1,0,1,4] → 0.5, [0,2,4,10] → 3, [0,1,2,3] → 1.5, [0,1,4,8] → 2.5, [−1,1,2,5] → 1.5 (numpy's mean of
        // the middle two; torch.median's lower middle would give 0, 2, 1, 1, 1).
        AssertClose(new[] { 0.5, 3, 1.5, 2.5, 1.5 }, Flat(CoordinateMedian.Median(Five[..4])), 0, "even median");
    }

    [Fact]
    public void Trimmed_mean_drops_k_at_each_end()
    {
        // β = 0.2, n = 5 → k = 1; mean of the middle three: (0+1+2)/3, (0+2+4)/3, (1+2+3)/3, (1+4+6)/3, (0+1+2)/3.
        AssertClose(new[] { 1, 2, 2, 11 / 3.0, 1 }, Flat(TrimmedMean.Mean(Five, 0.2)), 1e-6, "trimmed mean");
        // β = 0 is the plain mean: [6, 13, 11, 19, 7]/5.
        AssertClose(new[] { 1.2, 2.6, 2.2, 3.8, 1.4 }, Flat(TrimmedMean.Mean(Five, 0)), 1e-6, "untrimmed");
    }

    static readonly ClientTensors[] Line =
    {
        Client("a", 0, 0, 0, 0, 0),
        Client("b", 1, 0, 0, 0, 0),
        Client("c", 2, 0, 0, 0, 0),
        Client("d", 3, 0, 0, 0, 0),
        Client("e", 100, 0, 0, 0, 0),
    };

    [Fact]
    public void Krum_scores_and_selects_by_hand()
    {
        // f = 1, n = 5: each score sums the 2 nearest squared distances. a: 1 + 4, b: 1 + 1, c: 1 + 1, d: 1 + 4,
        // e: 97² + 98².
        var scores = Krum.Scores(Line, 1);
        Assert.Equal(new[] { 5.0, 2, 2, 5, 97.0 * 97 + 98 * 98 }, scores);
        // b and c tie; the smaller id wins.
        Assert.Equal(new[] { 1 }, Krum.Select(Line, 1));
        AssertClose(new double[] { 1, 0, 0, 0, 0 }, Flat(Krum.Combine(Line, Ones5, 1)), 0, "krum");
        // Multi-Krum m = 3 keeps b, c, then a (ties with d, smaller id); weights 1, 3, 4 for b, c, a →
        // (1·1 + 3·2 + 4·0)/8 = 7/8 (the uniform mean would be 1).
        double[] weights = { 4, 1, 3, 9, 9 };
        AssertClose(new[] { 7 / 8.0, 0, 0, 0, 0 }, Flat(Krum.Combine(Line, weights, 1, selected: 3)), 1e-6, "multi-krum");
        Assert.Throws<ArgumentException>(() => Krum.Scores(Line, 2)); // n = 5 ≤ 2·2 + 2
    }

    [Fact]
    public void Median_norm_clipping_clips_to_the_median_norm_then_weights()
    {
        // Norms 1, 2, 10 → τ = 2; clipped 1, 2, 2; weights 1, 1, 2 → 0.25 + 0.5 + 1 = 1.75 (unclipped: 5.75).
        var clients = new[] { Client("a", 1, 0, 0, 0, 0), Client("b", 0, 0, 0, 2, 0), Client("c", 10, 0, 0, 0, 0) };
        AssertClose(new[] { 1.25, 0, 0, 0.5, 0 }, Flat(MedianNormClipping.Combine(clients, new double[] { 1, 1, 2 })), 1e-6, "median-norm clipping");
    }

    [Fact]
    public void FlTrust_weights_by_relu_cosine_and_rescales_to_the_root_norm()
    {
        // Root Δ₀ = (3, 4) in lora_A, ‖Δ₀‖ = 5. a = (6, 8): cos 1, rescaled (3, 4). b = (0, −2): cos −0.8 → 0.
        // c = (4, 0): cos 0.6, rescaled (5, 0). Aggregate ((3, 4) + 0.6·(5, 0)) / 1.6 = (3.75, 2.5).
        var root = Adapter(new double[] { 3, 4, 0, 0, 0 });
        var clients = new[] { Client("a", 6, 8, 0, 0, 0), Client("b", 0, -2, 0, 0, 0), Client("c", 4, 0, 0, 0, 0) };
        Assert.Equal(new[] { 1, 0, 0.6 }, FlTrust.TrustScores(clients, root).Select(s => Math.Round(s, 12)));
        AssertClose(new[] { 3.75, 2.5, 0, 0, 0 }, Flat(FlTrust.Combine(clients, root)), 1e-6, "fltrust");
        // Nobody agrees with the server: the global does not move.
        Assert.Equal(new double[5], Flat(FlTrust.Combine(new[] { clients[1] }, root)));
    }

    [Fact]
    public void Reports_say_who_each_rule_left_out_or_down_weighted()
    {
        var global = Adapter(new double[5]);
        // Krum (f = 1) keeps b alone: share 1, the rest 0; the scores are Krum's (hand values above).
        var krum = new Krum(1).AggregateWithReport(0, global, Line, Ones5);
        Assert.Equal(new Dictionary<string, double> { ["a"] = 0, ["b"] = 1, ["c"] = 0, ["d"] = 0, ["e"] = 0 }, krum.ClientWeights);
        Assert.Equal("krum_score", krum.ScoreName);
        Assert.Equal(97.0 * 97 + 98 * 98, krum.ClientScores!["e"]);
        AssertClose(Flat(Krum.Combine(Line, Ones5, 1)), Flat(krum.Tensors), 0, "krum with report");
        // Multi-Krum m = 3 with weights 4, 1, 3 for a, b, c: shares 4/8, 1/8, 3/8; d and e left out.
        var multi = new Krum(1, selected: 3).AggregateWithReport(0, global, Line, new double[] { 4, 1, 3, 9, 9 });
        Assert.Equal(new[] { 0.5, 0.125, 0.375, 0, 0 }, Line.Select(c => multi.ClientWeights![c.ClientId]));
        // FLTrust (the hand case above): trust 1, 0, 0.6 → shares 1/1.6, 0, 0.6/1.6.
        var root = Adapter(new double[] { 3, 4, 0, 0, 0 });
        var trusted = new[] { Client("a", 6, 8, 0, 0, 0), Client("b", 0, -2, 0, 0, 0), Client("c", 4, 0, 0, 0, 0) };
        var fltrust = new FlTrust((_, _) => root).AggregateWithReport(0, global, trusted, new double[] { 1, 1, 1 });
        Assert.Equal(new[] { 0.625, 0, 0.375 }, trusted.Select(c => Math.Round(fltrust.ClientWeights![c.ClientId], 12)));
        Assert.Equal(new[] { 1, 0, 0.6 }, trusted.Select(c => Math.Round(fltrust.ClientScores![c.ClientId], 12)));
        AssertClose(new[] { 3.75, 2.5, 0, 0, 0 }, Flat(fltrust.Tensors), 1e-6, "fltrust with report");
        // Norm clipping (norms 1, 2, 10 → τ = 2): c scaled by 0.2; shares are the weights 1, 1, 2 over 4.
        var clipped = new[] { Client("a", 1, 0, 0, 0, 0), Client("b", 0, 0, 0, 2, 0), Client("c", 10, 0, 0, 0, 0) };
        var clip = new MedianNormClipping().AggregateWithReport(0, global, clipped, new double[] { 1, 1, 2 });
        Assert.Equal(new[] { 0.25, 0.25, 0.5 }, clipped.Select(c => clip.ClientWeights![c.ClientId]));
        Assert.Equal(new[] { 1, 1, 0.2 }, clipped.Select(c => Math.Round(clip.ClientScores![c.ClientId], 12)));
        // Coordinate-wise rules have no per-client weight.
        var median = ((IRobustAggregator)new CoordinateMedian()).AggregateWithReport(0, global, Five, Ones5);
        Assert.Null(median.ClientWeights);
        AssertClose(new double[] { 1, 2, 2, 4, 1 }, Flat(median.Tensors), 0, "median with report");
    }

    [Fact]
    public void The_decorator_puts_the_rules_report_on_the_rounds_record()
    {
        using var robust = new RobustAggregation(new FedAvg(), new Krum(0));
        var updates = Rounds[0].Select(c => Update(c)).ToList();
        robust.Aggregate(0, Adapter(X0), updates);
        var record = robust.Annotate(new RoundRecord
        {
            Round = 0, LearningRate = 0.1, Clients = updates.Select(u => u.ClientId).ToList(), ClientLoss = new Dictionary<string, double>(),
            UpdateNorms = new Dictionary<string, double>(), GlobalStepNorm = 0, BytesSent = 0, BytesReceived = 0, Seconds = 0,
        });
        var report = Assert.IsType<RoundRobust>(record.Robust);
        Assert.Equal("krum", report.Rule);
        Assert.Equal(updates.Count - 1, report.LeftOut().Count);
        Assert.Equal(1.0, report.ClientWeights!.Values.Sum());
        // It survives metrics.jsonl.
        var read = MetricsJsonl.ParseLine(MetricsJsonl.Line(record)).Robust!;
        Assert.Equal(report.ClientWeights, read.ClientWeights);
        Assert.Equal("krum_score", read.ScoreName);
    }

    static IEnumerable<IRobustAggregator> All() => new IRobustAggregator[]
    {
        new CoordinateMedian(), new TrimmedMean(0.25), new Krum(1), new Krum(1, selected: 3), new MedianNormClipping(),
        new FlTrust((_, _) => Adapter(new double[] { 1, 1, 1, 0, -1 })), new Flame(0.1, FedLlm.Privacy.NoiseSource.FromRunSeed(5)),
    };

    [Fact]
    public void Every_aggregator_ignores_the_order_clients_arrive_in()
    {
        var random = new Random(3);
        var clients = Enumerable.Range(0, 7).Select(i => Client($"client{i}", Enumerable.Range(0, 5).Select(_ => random.NextDouble() * 2 - 1).ToArray())).ToArray();
        var weights = Enumerable.Range(0, 7).Select(i => (double)(i * i + 1)).ToArray();
        var shuffled = new[] { 4, 0, 6, 2, 5, 1, 3 };
        foreach (var aggregator in All())
        {
            var straight = aggregator.Aggregate(0, Adapter(X0), clients, weights);
            var permuted = aggregator.Aggregate(0, Adapter(X0), shuffled.Select(i => clients[i]).ToArray(), shuffled.Select(i => weights[i]).ToArray());
            AssertBitEqual(straight, permuted, aggregator.Name);
        }
    }

    /// <summary>7 honest clients with values in [−1, 1] and 2 attackers, either random huge values or two colluders
    /// sending the same huge vector.</summary>
    static (ClientTensors[] All, ClientTensors[] Honest) Attacked(int seed, bool colluding)
    {
        var random = new Random(seed);
        var honest = Enumerable.Range(0, 7).Select(i => Client($"h{i}", Enumerable.Range(0, 5).Select(_ => random.NextDouble() * 2 - 1).ToArray())).ToArray();
        var shared = Enumerable.Range(0, 5).Select(_ => (random.NextDouble() - 0.5) * 2e6).ToArray();
        var attackers = Enumerable.Range(0, 2).Select(i => Client($"z{i}", colluding
            ? shared
            : Enumerable.Range(0, 5).Select(_ => (random.NextDouble() - 0.5) * 2e6).ToArray())).ToArray();
        return (honest.Concat(attackers).ToArray(), honest);
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, true)]
    [InlineData(3, false)]
    [InlineData(4, true)]
    public void Median_and_trimmed_mean_stay_within_the_honest_range_under_attack(int seed, bool colluding)
    {
        var (clients, honest) = Attacked(seed, colluding);
        var low = Enumerable.Range(0, 5).Select(k => honest.Min(c => Flat(c.Tensors)[k])).ToArray();
        var high = Enumerable.Range(0, 5).Select(k => honest.Max(c => Flat(c.Tensors)[k])).ToArray();
        foreach (var result in new[] { CoordinateMedian.Median(clients), TrimmedMean.Mean(clients, 2 / 9.0 + 1e-9) })
        {
            var flat = Flat(result);
            for (int k = 0; k < 5; k++)
                Assert.InRange(flat[k], low[k] - 1e-6, high[k] + 1e-6);
        }
        // The plain mean does not: the test's attack is strong enough to matter.
        var mean = Flat(Averaging.Mean(clients));
        Assert.Contains(Enumerable.Range(0, 5), k => mean[k] < low[k] || mean[k] > high[k]);
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, true)]
    [InlineData(5, true)]
    public void Krum_picks_an_honest_update_when_n_exceeds_2f_plus_2(int seed, bool colluding)
    {
        var (clients, _) = Attacked(seed, colluding); // n = 9 > 2·2 + 2
        foreach (int i in Krum.Select(clients, 2, selected: 5))
            Assert.StartsWith("h", clients[i].ClientId);
    }

    [Fact]
    public void Decorator_around_fedavg_replaces_the_weighted_mean()
    {
        // x + median(Δ_i) = median(y_i) for round 1 of the script: y = [1.2,−1,0.5,1,2], [0.8,−2.6,0,−1,4], [2,0,1,0.5,3].
        using var robust = new RobustAggregation(new FedAvg(), new CoordinateMedian());
        var next = Flat(robust.Aggregate(0, Adapter(X0), Rounds[0].Select(c => Update(c)).ToList()));
        AssertClose(new[] { 1.2, -1, 0.5, 0.5, 3 }, next, 1e-6, "robust FedAvg");
        Assert.Equal("fedavg", robust.Name);
    }

    [Fact]
    public void Decorator_around_fedavgm_feeds_the_robust_delta_to_the_momentum()
    {
        using var robust = new RobustAggregation(new FedAvgM(new StrategyOptions()), new CoordinateMedian());
        robust.Aggregate(0, Adapter(X0), Rounds[0].Select(c => Update(c)).ToList());
        // m₀ = Δ = median(y) − x0 = [0.2, 1, 0, 0.5, 0].
        var state = robust.State;
        AssertClose(new[] { 0.2, 1, 0, 0.5, 0 }, Values(state["m/" + KeyA]).Concat(Values(state["m/" + KeyB])).ToArray(), 1e-6, "momentum");
    }

    [Fact]
    public void Decorator_around_scaffold_is_refused()
    {
        using var robust = new RobustAggregation(new Scaffold(new StrategyOptions { TotalClients = 3 }), new CoordinateMedian());
        var updates = Rounds[0].Select(c => Update(c, Adapter(new double[5]))).ToList();
        Assert.Throws<AggregationException>(() => robust.Aggregate(0, Adapter(X0), updates));
    }
}
