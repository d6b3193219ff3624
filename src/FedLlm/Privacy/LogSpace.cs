namespace FedLlm.Privacy;

/// <summary>
/// Arithmetic on numbers held as their natural logarithms, and log erfc: what the sampled Gaussian mechanism's RDP
/// needs, because its terms span hundreds of orders of magnitude (exp((k² − k)/(2σ²)) at k = 256, σ = 0.5 is e^65280).
/// </summary>
internal static class LogSpace
{
    /// <summary>log(e^a + e^b) without overflow; −∞ stands for zero.</summary>
    public static double Add(double logA, double logB)
    {
        if (double.IsNegativeInfinity(logA)) return logB;
        if (double.IsNegativeInfinity(logB)) return logA;
        double high = Math.Max(logA, logB), low = Math.Min(logA, logB);
        return high + Math.Log(1 + Math.Exp(low - high)); // low − high ≤ 0, so exp never overflows
    }

    /// <summary>log(e^a − e^b) for a ≥ b; −∞ when they are equal.</summary>
    /// <exception cref="ArithmeticException">b &gt; a: the difference would be negative.</exception>
    public static double Subtract(double logA, double logB)
    {
        if (double.IsNegativeInfinity(logB)) return logA;
        if (logB > logA) throw new ArithmeticException($"log-space subtraction of a larger number (e^{logB} > e^{logA})");
        if (logB == logA) return double.NegativeInfinity;
        return logA + Math.Log(-ExpM1(logB - logA)); // expm1 keeps precision when the two are close
    }

    /// <summary>log(1 + x), accurate for tiny x (.NET's double.LogP1 is computed as Log(x + 1), which loses every digit
    /// of x below 1e−16): Goldberg's correction, "What Every Computer Scientist Should Know About Floating-Point
    /// Arithmetic" (1991), Theorem 4.</summary>
    public static double Log1P(double x)
    {
        double u = 1 + x;
        return u == 1 ? x : Math.Log(u) * x / (u - 1);
    }

    /// <summary>e^x − 1, accurate for tiny x (Kahan's correction; .NET's double.ExpM1 is Exp(x) − 1).</summary>
    public static double ExpM1(double x)
    {
        double u = Math.Exp(x);
        if (u == 1) return x;
        double um1 = u - 1;
        if (um1 == -1) return -1;
        return double.IsPositiveInfinity(u) ? u : um1 * x / Math.Log(u);
    }

    /// <summary>log erfc(x), accurate in relative terms for every finite x (erfc(30) = 2.6e−393 is below double's
    /// range, its log is not).</summary>
    /// <remarks>
    /// For x &lt; 2 the series erf(x) = (2/√π)·e^{−x²}·Σ_n 2ⁿx^{2n+1}/(1·3·…·(2n+1)), whose terms are all positive
    /// (Abramowitz and Stegun 7.1.6), so erfc = 1 − erf loses at most a factor 1/erfc(2) ≈ 200 of relative precision.
    /// For x ≥ 2 the continued fraction erfc(x) = e^{−x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))) (A&amp;S 7.1.14),
    /// evaluated with the modified Lentz method and kept in log form. For x &lt; 0, erfc(x) = 2 − erfc(−x) ∈ (1, 2].
    /// </remarks>
    public static double LogErfc(double x)
    {
        if (double.IsNaN(x)) return double.NaN;
        if (x < 0) return Math.Log(2 - Math.Exp(LogErfc(-x)));
        if (x < 2) return Math.Log(1 - ErfSeries(x));
        return -x * x - 0.5 * Math.Log(Math.PI) - Math.Log(ContinuedFraction(x));
    }

    /// <summary>erf(x) for 0 ≤ x &lt; 2 by the all-positive series.</summary>
    static double ErfSeries(double x)
    {
        double term = x, sum = x, twoX2 = 2 * x * x;
        for (int n = 1; n < 200; n++)
        {
            term *= twoX2 / (2 * n + 1);
            sum += term;
            if (term < sum * 1e-17) break;
        }
        return 2 / Math.Sqrt(Math.PI) * Math.Exp(-x * x) * sum;
    }

    /// <summary>x + (1/2)/(x + 1/(x + (3/2)/(x + …))) by modified Lentz (Press et al., Numerical Recipes §5.2).</summary>
    static double ContinuedFraction(double x)
    {
        const double tiny = 1e-300;
        double f = x, c = x, d = 0;
        for (int n = 1; n < 10_000; n++)
        {
            double a = n / 2.0;
            d = x + a * d;
            if (d == 0) d = tiny;
            c = x + a / c;
            if (c == 0) c = tiny;
            d = 1 / d;
            double step = c * d;
            f *= step;
            if (Math.Abs(step - 1) < 1e-16) return f;
        }
        throw new ArithmeticException($"erfc continued fraction did not converge at x = {x}");
    }
}
