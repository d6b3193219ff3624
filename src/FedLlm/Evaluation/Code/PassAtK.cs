namespace FedLlm.Evaluation.Code;

/// <summary>
/// The unbiased pass@k estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", §2.1):
/// with n samples of which c pass, pass@k = 1 − C(n−c, k) / C(n, k), the probability that at least one of k samples
/// drawn without replacement passes.
/// </summary>
/// <remarks>
/// Computed in the paper's product form, 1 − Π_{i=n−c+1..n} (1 − k/i), because the binomials overflow a double from
/// n ≈ 1000 on. When n − c &lt; k every draw of k contains a passing sample, so the value is exactly 1.
/// </remarks>
public static class PassAtK
{
    /// <summary>pass@k of one problem.</summary>
    /// <exception cref="ArgumentOutOfRangeException">k ∉ [1, n] or c ∉ [0, n].</exception>
    public static double Estimate(int n, int c, int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(k);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(k, n);
        ArgumentOutOfRangeException.ThrowIfNegative(c);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(c, n);
        if (n - c < k) return 1.0;
        double failAll = 1.0;
        for (var i = n - c + 1; i <= n; i++) failAll *= 1.0 - (double)k / i;
        return 1.0 - failAll;
    }

    /// <summary>
    /// Mean pass@k over problems for each k that every problem has enough samples for (human-eval reports a k only
    /// when k ≤ n for all problems).
    /// </summary>
    /// <param name="problems">(samples, passed) per problem.</param>
    /// <param name="ks">The k values asked for; those above the smallest n are left out.</param>
    public static IReadOnlyDictionary<int, double> Mean(IReadOnlyList<(int Samples, int Passed)> problems, IEnumerable<int> ks)
    {
        ArgumentNullException.ThrowIfNull(problems);
        ArgumentNullException.ThrowIfNull(ks);
        var result = new SortedDictionary<int, double>();
        if (problems.Count == 0) return result;
        var minSamples = problems.Min(p => p.Samples);
        foreach (var k in ks.Distinct().Where(k => k >= 1 && k <= minSamples))
            result[k] = problems.Average(p => Estimate(p.Samples, p.Passed, k));
        return result;
    }
}
