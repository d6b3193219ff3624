using FedLlm.Runtime;

namespace FedLlm.Data.Partitioning;

/// <summary>
/// Normal, Gamma and Dirichlet draws from a <see cref="SplitMix64"/> stream, so a partition is a documented function
/// of its seed on any runtime.
/// </summary>
/// <remarks>
/// <para>Normal: Marsaglia's polar method. Gamma(shape, 1): Marsaglia and Tsang (2000), "A simple method for generating
/// gamma variables", for shape ≥ 1; for shape &lt; 1 their boost Gamma(a) = Gamma(a + 1) · U^(1/a).</para>
/// <para>Gamma is returned as its logarithm: with the small concentrations non-IID splits use (α = 0.01), U^(1/α)
/// underflows to 0 for every client and the Dirichlet normalisation would be 0/0. In log space the largest component
/// is subtracted before exponentiating, which stays exact.</para>
/// </remarks>
internal static class RandomSampling
{
    /// <summary>A standard normal draw.</summary>
    public static double Normal(SplitMix64 rng)
    {
        while (true)
        {
            var u = 2 * rng.NextDouble() - 1;
            var v = 2 * rng.NextDouble() - 1;
            var s = u * u + v * v;
            // The second value of the pair is dropped so each call is a pure function of the stream position.
            if (s > 0 && s < 1) return u * Math.Sqrt(-2 * Math.Log(s) / s);
        }
    }

    /// <summary>log of a Gamma(<paramref name="shape"/>, 1) draw.</summary>
    public static double LogGamma(SplitMix64 rng, double shape)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(shape);
        if (shape < 1)
        {
            // 1 - NextDouble() is in (0, 1], so the log is finite.
            var u = 1 - rng.NextDouble();
            return LogGamma(rng, shape + 1) + Math.Log(u) / shape;
        }

        var d = shape - 1.0 / 3;
        var c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double x, v;
            do
            {
                x = Normal(rng);
                v = 1 + c * x;
            }
            while (v <= 0);

            v = v * v * v;
            var logU = Math.Log(1 - rng.NextDouble());
            if (logU < 0.5 * x * x + d - d * v + d * Math.Log(v)) return Math.Log(d) + Math.Log(v);
        }
    }

    /// <summary>A Gamma(<paramref name="shape"/>, 1) draw.</summary>
    public static double Gamma(SplitMix64 rng, double shape) => Math.Exp(LogGamma(rng, shape));

    /// <summary>A Dirichlet(<paramref name="alphas"/>) draw: normalised independent Gamma(α_i) draws.</summary>
    public static double[] Dirichlet(SplitMix64 rng, IReadOnlyList<double> alphas)
    {
        ArgumentNullException.ThrowIfNull(alphas);
        if (alphas.Count == 0) throw new ArgumentException("A Dirichlet needs at least one component.", nameof(alphas));
        var logs = new double[alphas.Count];
        for (var i = 0; i < logs.Length; i++) logs[i] = LogGamma(rng, alphas[i]);
        var max = logs.Max();
        var sum = 0.0;
        for (var i = 0; i < logs.Length; i++) sum += logs[i] = Math.Exp(logs[i] - max);
        for (var i = 0; i < logs.Length; i++) logs[i] /= sum;
        return logs;
    }

    /// <summary>A symmetric Dirichlet(α, ..., α) draw of <paramref name="count"/> components.</summary>
    public static double[] Dirichlet(SplitMix64 rng, double alpha, int count) => Dirichlet(rng, Enumerable.Repeat(alpha, count).ToArray());

    /// <summary>
    /// Whole counts that sum to <paramref name="total"/> in the given proportions: floors, then the remaining units
    /// to the largest fractional parts (ties to the lower index), so rounding never loses or invents an example.
    /// </summary>
    public static int[] Apportion(IReadOnlyList<double> proportions, int total)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(total);
        var sum = proportions.Sum();
        var counts = new int[proportions.Count];
        var remainders = new double[proportions.Count];
        var assigned = 0;
        for (var i = 0; i < counts.Length; i++)
        {
            var exact = sum > 0 ? proportions[i] / sum * total : (double)total / counts.Length;
            counts[i] = (int)Math.Floor(exact);
            remainders[i] = exact - counts[i];
            assigned += counts[i];
        }

        foreach (var i in Enumerable.Range(0, counts.Length).OrderByDescending(i => remainders[i]).ThenBy(i => i).Take(total - assigned))
            counts[i]++;
        return counts;
    }
}
