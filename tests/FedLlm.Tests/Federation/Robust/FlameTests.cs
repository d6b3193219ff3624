using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Robust;
using FedLlm.Privacy;
using static FedLlm.Tests.Federation.FederationTestData;

namespace FedLlm.Tests.Federation.Robust;

public class FlameTests
{
    static ClientTensors Client(string id, params double[] flat) => new(id, Adapter(flat));

    /// <summary>Four updates around the first two axes and one flipped: norms 1, 4, 5, 2, 6.</summary>
    static readonly ClientTensors[] Round =
    {
        Client("a", 1, 0, 0, 0, 0),
        Client("b", 4, 0, 0, 0, 0),
        Client("c", 3, 4, 0, 0, 0),
        Client("d", 0, 2, 0, 0, 0),
        Client("e", -6, 0, 0, 0, 0),
    };

    /// <summary>Unequal example counts: FLAME's mean is unweighted, so these must not matter.</summary>
    static readonly double[] Weights = { 1, 7, 2, 30, 5 };

    static readonly IReadOnlyDictionary<string, TorchSharp.torch.Tensor> Global = Adapter(new double[5]);

    [Fact]
    public void The_flipped_update_is_left_out_and_the_rest_clipped_to_the_median_norm()
    {
        // Cosine distances: ab 0, cd 0.2, ac = bc 0.4, ad = bd 1, de 1, ce 1.6, ae = be 2. Single linkage joins {a,b} at 0,
        // {c,d} at 0.2, and {a,b,c,d} at 0.4: the first component of ⌊5/2⌋ + 1 = 3 clients; e is noise.
        // S = median(1, 4, 5, 2, 6) = 4 (over all five; the kept four's median would be 3), so only c is clipped, by 4/5.
        // Mean of a + b + 0.8·c + d over L = 4: ((1 + 4 + 2.4 + 0), (3.2 + 2)) / 4 = (1.85, 1.3).
        var decision = Flame.Filter(Round);
        Assert.Equal(new[] { true, true, true, true, false }, decision.Kept);
        Assert.Equal(4, decision.MedianNorm);
        Assert.Equal(new[] { 1, 1, 0.8, 1, 4 / 6.0 }, decision.ClipScales);

        var report = new Flame(0, NoiseSource.FromRunSeed(1)).AggregateWithReport(0, Global, Round, Weights);
        AssertClose(new[] { 1.85, 1.3, 0, 0, 0 }, Flat(report.Tensors), 1e-6, "flame, λ = 0");
        Assert.Equal(new[] { 0.25, 0.25, 0.25, 0.25, 0 }, Round.Select(c => report.ClientWeights![c.ClientId]));
        Assert.Equal("clip_scale", report.ScoreName);
        Assert.Equal(new[] { 1, 1, 0.8, 1, 0 }, Round.Select(c => report.ClientScores![c.ClientId]));
    }

    [Fact]
    public void Identical_updates_are_all_kept_and_a_scaled_copy_is_kept_but_clipped()
    {
        var same = Enumerable.Range(0, 4).Select(i => Client($"c{i}", 1, -2, 0, 2, 0)).ToArray(); // norm 3
        Assert.All(Flame.Filter(same).Kept, Assert.True);
        AssertClose(new double[] { 1, -2, 0, 2, 0 }, Flat(new Flame(0, NoiseSource.FromRunSeed(1)).Aggregate(0, Global, same, [1, 2, 3, 4])), 1e-6, "identical");

        // A model-replacement update (10× the honest one) has cosine distance 0 to it, so the clustering keeps it; the
        // median norm of (3, 3, 3, 30) is 3, which clips it back to the honest size: (3·h + 0.1·10·h) / 4 = h (unclipped: 3.25·h).
        var replaced = same[..3].Append(Client("z", 10, -20, 0, 20, 0)).ToArray();
        var decision = Flame.Filter(replaced);
        Assert.All(decision.Kept, Assert.True);
        Assert.Equal(3, decision.MedianNorm);
        AssertClose(new double[] { 1, -2, 0, 2, 0 }, Flat(Flame.ClippedMean(replaced, decision)), 1e-6, "clipped replacement");
    }

    [Fact]
    public void The_noise_has_sigma_lambda_times_the_median_norm_from_the_rounds_seeded_generator()
    {
        const double lambda = 0.5;
        var noisy = new Flame(lambda, NoiseSource.FromRunSeed(2024)).Aggregate(3, Global, Round, Weights);
        var clean = Flame.ClippedMean(Round, Flame.Filter(Round));
        using (var generator = NoiseSource.FromRunSeed(2024).CreateGenerator(3, Flame.NoiseStream))
            AssertBitEqual(GaussianNoise.Add(clean, lambda * 4, generator), noisy, "σ = λ·S_t, S_t = 4");
        // Same seed and round: the same aggregate; another round or seed: other noise.
        AssertBitEqual(noisy, new Flame(lambda, NoiseSource.FromRunSeed(2024)).Aggregate(3, Global, Round, Weights), "reproducible");
        Assert.NotEqual(Flat(noisy), Flat(new Flame(lambda, NoiseSource.FromRunSeed(2024)).Aggregate(4, Global, Round, Weights)));
        Assert.NotEqual(Flat(noisy), Flat(new Flame(lambda, NoiseSource.FromRunSeed(2025)).Aggregate(3, Global, Round, Weights)));
        Assert.NotEqual(Flat(noisy), Flat(clean));
    }

    [Fact]
    public void The_result_does_not_depend_on_the_order_clients_arrive_in()
    {
        var shuffled = new[] { 3, 0, 4, 2, 1 };
        var flame = new Flame(0.1, NoiseSource.FromRunSeed(7));
        var straight = flame.AggregateWithReport(1, Global, Round, Weights);
        var permuted = flame.AggregateWithReport(1, Global, shuffled.Select(i => Round[i]).ToArray(), shuffled.Select(i => Weights[i]).ToArray());
        AssertBitEqual(straight.Tensors, permuted.Tensors, "flame");
        Assert.Equal(straight.ClientWeights, permuted.ClientWeights);
    }

    [Fact]
    public void A_negative_or_infinite_lambda_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Flame(-0.01, NoiseSource.FromRunSeed(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Flame(double.PositiveInfinity, NoiseSource.FromRunSeed(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Flame(double.NaN, NoiseSource.FromRunSeed(1)));
    }
}
