namespace FedLlm.Privacy;

/// <summary>
/// Rényi differential privacy of one step of the sampled Gaussian mechanism (SGM): each record (for FedLlm, each client)
/// is included independently with probability q (Poisson sampling), the sum of the included clipped contributions
/// (sensitivity 1) gets N(0, σ²) noise. Pure functions of (q, σ, α).
/// </summary>
/// <remarks>
/// <para>Mironov, Talwar, Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism", arXiv:1908.10530
/// (2019): the SGM's RDP at order α is log(A_α)/(α − 1) with A_α = E_{z∼μ0}[(μ(z)/μ0(z))^α], μ0 = N(0, σ²),
/// μ = (1 − q)μ0 + q·N(1, σ²). Section 3.2 gives A_α for integer α as a binomial sum, section 3.3 for fractional α as
/// two erfc series. Both run here in log space (terms reach e^65280 at α = 256, σ = 0.5). The same computation as
/// TF-Privacy's and Opacus' compute_rdp, written from the paper; the golden test checks it against an mpmath quadrature
/// of the definition (tests/reference/dp/rdp_reference.py).</para>
/// <para>Series truncation: past i = α the fractional-order terms alternate in sign and fall only polynomially
/// (|C(α,i)| ∼ i^(−α−1); the erfc factor cancels the exp((i² − i)/(2σ²)) growth), so they are summed until both are
/// e^30 below the running sum, which is ≥ 1 since A_α ≥ 1: TF-Privacy's cut-off of e^−30. log A_α is then right to
/// about 1e−13 absolute, i.e. about 1e−8 relative to the RDP when the RDP is as small as 1e−5 (q = 10⁻³); the golden
/// test allows 1e−6 at fractional orders and 1e−10 at integer ones, where the sum is finite and exact.</para>
/// <para>Google's dp_accounting reports a larger value than the exact one at some fractional orders (6.7058e−4 instead of
/// 6.5007e−4 at q = 0.01, σ = 2.5, α = 1.5, 50 steps, which the reference's quadrature confirms); an upper bound is
/// still a valid guarantee, the exact value is tighter.</para>
/// </remarks>
public static class SampledGaussianRdp
{
    /// <summary>RDP of one SGM step at <paramref name="order"/> α &gt; 1; +∞ when σ = 0 (no noise) or α = ∞.</summary>
    /// <param name="samplingRate">q ∈ [0, 1]; q = 1 is the plain Gaussian mechanism, α/(2σ²) (Mironov 2017, Prop. 7).</param>
    /// <param name="noiseMultiplier">σ ≥ 0, the noise standard deviation divided by the sensitivity (the clip norm).</param>
    /// <param name="order">α &gt; 1, integer or not; +∞ allowed.</param>
    public static double Rdp(double samplingRate, double noiseMultiplier, double order)
    {
        if (!(samplingRate >= 0 && samplingRate <= 1))
            throw new ArgumentOutOfRangeException(nameof(samplingRate), samplingRate, "the sampling rate q must be in [0, 1]");
        if (!(noiseMultiplier >= 0) || double.IsPositiveInfinity(noiseMultiplier))
            throw new ArgumentOutOfRangeException(nameof(noiseMultiplier), noiseMultiplier, "the noise multiplier σ must be finite and ≥ 0");
        if (!(order > 1))
            throw new ArgumentOutOfRangeException(nameof(order), order, "RDP orders must be > 1");

        if (samplingRate == 0) return 0;
        if (noiseMultiplier == 0) return double.PositiveInfinity;
        if (samplingRate == 1) return order / (2 * noiseMultiplier * noiseMultiplier);
        if (double.IsPositiveInfinity(order)) return double.PositiveInfinity;

        double logA = order == Math.Floor(order) && order < int.MaxValue
            ? LogAInteger(samplingRate, noiseMultiplier, (int)order)
            : LogAFractional(samplingRate, noiseMultiplier, order);
        return logA / (order - 1);
    }

    /// <summary>RDP at each of <paramref name="orders"/> for <paramref name="steps"/> steps: composition adds RDP at
    /// equal orders (Mironov 2017, Proposition 1), so T identical steps cost T times one.</summary>
    public static double[] Rdp(double samplingRate, double noiseMultiplier, IReadOnlyList<double> orders, long steps = 1)
    {
        ArgumentNullException.ThrowIfNull(orders);
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        return orders.Select(a => steps == 0 ? 0 : Rdp(samplingRate, noiseMultiplier, a) * steps).ToArray();
    }

    /// <summary>log A_α for integer α: log Σ_{k=0}^{α} C(α,k)·(1 − q)^{α−k}·q^k·exp((k² − k)/(2σ²)) (MTZ19, §3.2).</summary>
    static double LogAInteger(double q, double sigma, int alpha)
    {
        double logQ = Math.Log(q), log1mQ = LogSpace.Log1P(-q), twoSigma2 = 2 * sigma * sigma;
        double logA = double.NegativeInfinity, logBinomial = 0; // log C(α, 0)
        for (int k = 0; k <= alpha; k++)
        {
            double term = logBinomial + k * logQ + (alpha - k) * log1mQ + ((double)k * k - k) / twoSigma2;
            logA = LogSpace.Add(logA, term);
            logBinomial += Math.Log(alpha - k) - Math.Log(k + 1.0); // C(α, k+1) = C(α, k)·(α − k)/(k + 1)
        }
        return logA;
    }

    /// <summary>
    /// log A_α for fractional α (MTZ19, §3.3): A_α = A₀ + A₁ with, for z₀ = σ²·log(1/q − 1) + 1/2,
    /// A₀ = Σ_i C(α,i)·q^i(1 − q)^{α−i}·exp((i² − i)/(2σ²))·½erfc((i − z₀)/(√2σ)) and
    /// A₁ = Σ_i C(α,i)·q^{α−i}(1 − q)^i·exp(((α−i)² − (α−i))/(2σ²))·½erfc((z₀ − (α − i))/(√2σ)).
    /// The generalised binomial C(α,i) changes sign once i &gt; α + 1, so both sums are kept as log-magnitudes and
    /// negative terms are subtracted.
    /// </summary>
    static double LogAFractional(double q, double sigma, double alpha)
    {
        double logQ = Math.Log(q), log1mQ = LogSpace.Log1P(-q), twoSigma2 = 2 * sigma * sigma, sqrt2Sigma = Math.Sqrt(2) * sigma;
        double z0 = sigma * sigma * Math.Log(1 / q - 1) + 0.5;
        double logA0 = double.NegativeInfinity, logA1 = double.NegativeInfinity;
        double logCoefficient = 0; // log |C(α, i)|
        int sign = 1;               // sign of C(α, i)
        for (int i = 0; ; i++)
        {
            double j = alpha - i;
            double logT0 = logCoefficient + i * logQ + j * log1mQ;
            double logT1 = logCoefficient + j * logQ + i * log1mQ;
            double logE0 = Math.Log(0.5) + LogSpace.LogErfc((i - z0) / sqrt2Sigma);
            double logE1 = Math.Log(0.5) + LogSpace.LogErfc((z0 - j) / sqrt2Sigma);
            double logS0 = logT0 + ((double)i * i - i) / twoSigma2 + logE0;
            double logS1 = logT1 + (j * j - j) / twoSigma2 + logE1;
            if (sign > 0)
            {
                logA0 = LogSpace.Add(logA0, logS0);
                logA1 = LogSpace.Add(logA1, logS1);
            }
            else
            {
                logA0 = LogSpace.Subtract(logA0, logS0);
                logA1 = LogSpace.Subtract(logA1, logS1);
            }

            double total = LogSpace.Add(logA0, logA1);
            if (i > alpha && Math.Max(logS0, logS1) < total - 30) return total;
            if (i > 10_000_000) throw new ArithmeticException($"SGM RDP series did not converge (q = {q}, σ = {sigma}, α = {alpha})");

            // C(α, i+1) = C(α, i)·(α − i)/(i + 1); the factor is negative once i > α.
            double factor = (alpha - i) / (i + 1.0);
            if (factor < 0) sign = -sign;
            logCoefficient += Math.Log(Math.Abs(factor));
        }
    }
}
