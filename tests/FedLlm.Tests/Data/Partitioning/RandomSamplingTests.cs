using FedLlm.Runtime;
using FedLlm.Data.Partitioning;
using FedLlm.Defaults;

namespace FedLlm.Tests.Data.Partitioning;

public sealed class RandomSamplingTests
{
    private const int Draws = 40_000;

    [Theory]
    [InlineData(0.05)]
    [InlineData(0.3)]
    [InlineData(1.0)]
    [InlineData(2.5)]
    [InlineData(7.0)]
    public void Gamma_has_mean_and_variance_equal_to_its_shape(double shape)
    {
        // Gamma(k, 1): mean k, variance k. A sampler with the wrong boost (shape < 1) or squeeze constant (shape >= 1)
        // moves the mean by far more than the tolerance of 5 standard errors.
        var rng = new SplitMix64(11);
        var draws = Enumerable.Range(0, Draws).Select(_ => RandomSampling.Gamma(rng, shape)).ToArray();
        var mean = draws.Average();
        var variance = draws.Select(x => (x - mean) * (x - mean)).Sum() / (Draws - 1);

        Assert.InRange(mean, shape - 5 * Math.Sqrt(shape / Draws), shape + 5 * Math.Sqrt(shape / Draws));
        // The variance estimate's standard error is sqrt((μ4 - σ⁴)/n) with μ4 = 3k² + 6k for Gamma(k).
        var varianceError = Math.Sqrt((3 * shape * shape + 6 * shape - shape * shape) / Draws);
        Assert.InRange(variance, shape - 5 * varianceError, shape + 5 * varianceError);
        Assert.All(draws, x => Assert.True(x >= 0));
    }

    [Fact]
    public void Dirichlet_component_means_are_alpha_over_the_alpha_sum()
    {
        double[] alphas = [0.2, 1.0, 3.0, 0.8];
        var rng = new SplitMix64(5);
        var sums = new double[alphas.Length];
        for (var i = 0; i < Draws; i++)
        {
            var p = RandomSampling.Dirichlet(rng, alphas);
            Assert.Equal(1.0, p.Sum(), 12);
            for (var k = 0; k < p.Length; k++) sums[k] += p[k];
        }

        var total = alphas.Sum();
        for (var k = 0; k < alphas.Length; k++)
        {
            var expected = alphas[k] / total;
            // Var(p_k) = a_k (A - a_k) / (A² (A + 1)).
            var error = Math.Sqrt(alphas[k] * (total - alphas[k]) / (total * total * (total + 1)) / Draws);
            Assert.InRange(sums[k] / Draws, expected - 5 * error, expected + 5 * error);
        }
    }

    [Fact]
    public void Tiny_alpha_stays_finite_and_concentrates_on_one_component()
    {
        // With α = 0.01, U^(1/α) underflows to 0 for every component; the log-space sampler must not produce NaN.
        var rng = new SplitMix64(3);
        var dominated = 0;
        for (var i = 0; i < 400; i++)
        {
            var p = RandomSampling.Dirichlet(rng, 0.01, 10);
            Assert.All(p, x => Assert.True(double.IsFinite(x)));
            Assert.Equal(1.0, p.Sum(), 12);
            if (p.Max() > 0.5) dominated++;
        }

        // log p_i - log p_j is 100 × (difference of exponentials) here, so the largest component has more than half
        // the mass unless the two smallest of ten Exp(1) draws are within 0.007: about 6% of draws.
        Assert.InRange(dominated, 340, 400);
    }

    [Fact]
    public void Normal_has_mean_0_and_variance_1()
    {
        var rng = new SplitMix64(9);
        var draws = Enumerable.Range(0, Draws).Select(_ => RandomSampling.Normal(rng)).ToArray();

        Assert.InRange(draws.Average(), -5 / Math.Sqrt(Draws), 5 / Math.Sqrt(Draws));
        Assert.InRange(draws.Select(x => x * x).Average(), 1 - 5 * Math.Sqrt(2.0 / Draws), 1 + 5 * Math.Sqrt(2.0 / Draws));
    }

    [Theory]
    [InlineData(new[] { 0.5, 0.3, 0.2 }, 7, new[] { 4, 2, 1 })]
    [InlineData(new[] { 1.0, 1.0, 1.0 }, 10, new[] { 4, 3, 3 })]
    [InlineData(new[] { 0.0, 1.0 }, 5, new[] { 0, 5 })]
    public void Apportion_rounds_by_largest_remainder_and_keeps_the_total(double[] proportions, int total, int[] expected) =>
        Assert.Equal(expected, RandomSampling.Apportion(proportions, total));
}
