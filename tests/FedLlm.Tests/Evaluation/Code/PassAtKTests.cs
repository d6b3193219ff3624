using FedLlm.Evaluation.Code;

namespace FedLlm.Tests.Evaluation.Code;

public class PassAtKTests
{
    [Theory]
    // n=5, c=2: 1 − C(3,k)/C(5,k) = 1 − 3/5, 1 − 3/10, 1 − 1/10.
    [InlineData(5, 2, 1, 0.4)]
    [InlineData(5, 2, 2, 0.7)]
    [InlineData(5, 2, 3, 0.9)]
    // n − c < k: every draw of 4 holds a passing sample.
    [InlineData(5, 2, 4, 1.0)]
    [InlineData(10, 0, 5, 0.0)]
    // n=10, c=3, k=2: 1 − C(7,2)/C(10,2) = 1 − 21/45.
    [InlineData(10, 3, 2, 24.0 / 45.0)]
    public void Estimate_matches_the_binomial_formula(int n, int c, int k, double expected) =>
        Assert.Equal(expected, PassAtK.Estimate(n, c, k), 12);

    [Fact]
    public void Estimate_stays_finite_where_the_binomials_overflow()
    {
        // C(1000, 500) overflows a double; the product form does not. With n=1000, c=1, k=1: 1/1000.
        Assert.Equal(0.001, PassAtK.Estimate(1000, 1, 1), 12);
        Assert.Equal(0.5, PassAtK.Estimate(1000, 1, 500), 12);
    }

    [Fact]
    public void Mean_averages_problems_and_leaves_out_k_above_the_sample_count()
    {
        // Problem A: 2 of 5 pass; B: 5 of 5. pass@1 = (0.4 + 1)/2, pass@2 = (0.7 + 1)/2; k=10 > n is not reported.
        var mean = PassAtK.Mean([(5, 2), (5, 5)], [1, 2, 10]);
        Assert.Equal([1, 2], mean.Keys);
        Assert.Equal(0.7, mean[1], 12);
        Assert.Equal(0.85, mean[2], 12);
    }

    [Fact]
    public void Estimate_refuses_k_above_n() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => PassAtK.Estimate(3, 1, 4));
}
