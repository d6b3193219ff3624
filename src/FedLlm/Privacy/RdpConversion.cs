namespace FedLlm.Privacy;

/// <summary>How an RDP curve becomes an (ε, δ) guarantee.</summary>
public enum RdpConversion
{
    /// <summary>ε = min_α [RDP(α) + log((α − 1)/α) − (log δ + log α)/(α − 1)], floored at 0: Balle, Barthe, Gaboardi,
    /// Hsu, Sato, "Hypothesis Testing Interpretations and Renyi Differential Privacy", AISTATS 2020, Theorem 21 (the
    /// same bound as Canonne, Kamath, Steinke 2020, Proposition 12). Opacus' get_privacy_spent uses it. Default.</summary>
    Improved,

    /// <summary>ε = min_α [RDP(α) + log(1/δ)/(α − 1)]: Mironov, "Rényi Differential Privacy", CSF 2017,
    /// Proposition 3. Looser; TF-Privacy's published tutorial numbers (ε = 3.01 for MNIST) use it.</summary>
    Classic,
}

/// <summary>An (ε, δ) guarantee and the Rényi order α at which the conversion was tightest.</summary>
/// <param name="Epsilon">ε ≥ 0, or +∞ when no order gives a finite bound.</param>
/// <param name="Delta">δ as asked.</param>
/// <param name="Order">The optimal α (NaN when ε is infinite). If it is the first or last order of the list, a wider
/// list could give a smaller ε.</param>
public readonly record struct PrivacySpent(double Epsilon, double Delta, double Order);

/// <summary>RDP curve → (ε, δ). Pure.</summary>
/// <remarks>Besides the chosen conversion, an order whose RDP r satisfies 1 − e^{−r} ≤ δ² gives ε = 0 outright: the
/// total variation distance is at most √(1 − e^{−KL}) (Bretagnolle–Huber) and KL ≤ D_α, and (0, δ)-DP is TV ≤ δ. The
/// same rule as dp_accounting's compute_epsilon; without it q = 0 would report ε ≈ 0.008 at δ = 1e−5.</remarks>
public static class RdpToDp
{
    /// <summary>The smallest ε over <paramref name="orders"/> for <paramref name="delta"/>, by
    /// <paramref name="conversion"/>.</summary>
    /// <exception cref="ArgumentException">Lengths differ, an order is ≤ 1, an RDP value is negative or NaN.</exception>
    public static PrivacySpent Epsilon(
        IReadOnlyList<double> orders, IReadOnlyList<double> rdp, double delta, RdpConversion conversion = RdpConversion.Improved)
    {
        ArgumentNullException.ThrowIfNull(orders);
        ArgumentNullException.ThrowIfNull(rdp);
        if (orders.Count != rdp.Count) throw new ArgumentException($"{orders.Count} orders but {rdp.Count} RDP values", nameof(rdp));
        if (orders.Count == 0) throw new ArgumentException("no orders", nameof(orders));
        if (!(delta > 0 && delta < 1)) throw new ArgumentOutOfRangeException(nameof(delta), delta, "δ must be in (0, 1)");

        double logDelta = Math.Log(delta);
        double best = double.PositiveInfinity, bestOrder = double.NaN;
        for (int k = 0; k < orders.Count; k++)
        {
            double a = orders[k], r = rdp[k];
            if (!(a > 1)) throw new ArgumentException($"order {a} is not > 1", nameof(orders));
            if (!(r >= 0)) throw new ArgumentException($"RDP {r} at order {a} is negative or NaN", nameof(rdp));
            if (double.IsPositiveInfinity(r) || double.IsPositiveInfinity(a)) continue;
            // (0, δ)-DP already holds: see the remarks.
            if (delta * delta + LogSpace.ExpM1(-r) >= 0)
            {
                if (0 < best) { best = 0; bestOrder = a; }
                continue;
            }
            double epsilon = conversion switch
            {
                RdpConversion.Improved => r + LogSpace.Log1P(-1 / a) - (logDelta + Math.Log(a)) / (a - 1),
                RdpConversion.Classic => r - logDelta / (a - 1),
                _ => throw new ArgumentOutOfRangeException(nameof(conversion), conversion, null),
            };
            if (epsilon < best)
            {
                best = epsilon;
                bestOrder = a;
            }
        }
        // A negative bound still proves (0, δ)-DP: a smaller ε is a stronger statement.
        return new PrivacySpent(Math.Max(best, 0), delta, bestOrder);
    }
}
