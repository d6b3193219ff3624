namespace FedLlm.Privacy;

/// <summary>
/// Privacy accounting for DP-FedAvg-style training: each round is one sampled Gaussian mechanism step (clients sampled
/// with probability q, clipped updates summed, Gaussian noise of σ times the clip norm); RDP adds up over rounds, and
/// the total converts to (ε, δ). Also the inverse questions a run asks before it starts.
/// </summary>
/// <remarks>
/// <para>Mironov, "Rényi Differential Privacy", CSF 2017 (composition, Prop. 1); Mironov, Talwar, Zhang, "Rényi
/// Differential Privacy of the Sampled Gaussian Mechanism", 2019 (per-step RDP, <see cref="SampledGaussianRdp"/>);
/// conversion by Balle et al. 2020, Theorem 21 (<see cref="RdpConversion.Improved"/>, as Opacus) unless told
/// otherwise. Client-level DP (McMahan et al. 2018): "record" means a whole client, q = expected clients per round /
/// total clients, and the guarantee assumes Poisson sampling of clients, which FedLlm's uniform fixed-size sampling
/// only approximates (the usual caveat of TF-Privacy's and Opacus' numbers too).</para>
/// <para>Not thread-safe. The state is the vector <see cref="Rdp"/>: save it with the run and rebuild the accountant
/// with <see cref="RdpAccountant(IReadOnlyList{double}, IReadOnlyList{double}, RdpConversion)"/> to resume.</para>
/// </remarks>
public sealed class RdpAccountant
{
    readonly double[] orders;
    readonly double[] rdp;

    /// <summary>An accountant with nothing spent yet, over <paramref name="orders"/> (default
    /// <see cref="RdpOrders.Default"/>).</summary>
    public RdpAccountant(IReadOnlyList<double>? orders = null, RdpConversion conversion = RdpConversion.Improved)
        : this(orders ?? RdpOrders.Default, new double[(orders ?? RdpOrders.Default).Count], conversion)
    {
    }

    /// <summary>An accountant that has already spent <paramref name="rdp"/> (as read from <see cref="Rdp"/>).</summary>
    public RdpAccountant(IReadOnlyList<double> orders, IReadOnlyList<double> rdp, RdpConversion conversion = RdpConversion.Improved)
    {
        ArgumentNullException.ThrowIfNull(orders);
        ArgumentNullException.ThrowIfNull(rdp);
        if (orders.Count == 0) throw new ArgumentException("no orders", nameof(orders));
        if (orders.Count != rdp.Count) throw new ArgumentException($"{orders.Count} orders but {rdp.Count} RDP values", nameof(rdp));
        foreach (var a in orders) if (!(a > 1)) throw new ArgumentException($"order {a} is not > 1", nameof(orders));
        foreach (var r in rdp) if (!(r >= 0)) throw new ArgumentException($"RDP value {r} is negative or NaN", nameof(rdp));
        this.orders = orders.ToArray();
        this.rdp = rdp.ToArray();
        Conversion = conversion;
    }

    /// <summary>The Rényi orders tracked.</summary>
    public IReadOnlyList<double> Orders => orders;

    /// <summary>A copy of the RDP spent so far at each order.</summary>
    public IReadOnlyList<double> Rdp => rdp.ToArray();

    /// <summary>The (ε, δ) conversion <see cref="GetPrivacySpent"/> uses.</summary>
    public RdpConversion Conversion { get; }

    /// <summary>Records <paramref name="steps"/> rounds of the SGM with sampling rate q and noise multiplier σ
    /// (rounds may differ in q and σ, e.g. adaptive clipping's effective σ).</summary>
    public void Compose(double samplingRate, double noiseMultiplier, long steps = 1)
    {
        var step = SampledGaussianRdp.Rdp(samplingRate, noiseMultiplier, orders, steps);
        for (int k = 0; k < rdp.Length; k++) rdp[k] += step[k];
    }

    /// <summary>The (ε, δ) guarantee of everything composed so far.</summary>
    public PrivacySpent GetPrivacySpent(double delta) => RdpToDp.Epsilon(orders, rdp, delta, Conversion);

    /// <summary>ε of everything composed so far at <paramref name="delta"/>.</summary>
    public double GetEpsilon(double delta) => GetPrivacySpent(delta).Epsilon;

    /// <summary>ε after <paramref name="rounds"/> identical rounds.</summary>
    public static PrivacySpent EpsilonAfter(
        double samplingRate, double noiseMultiplier, long rounds, double delta,
        IReadOnlyList<double>? orders = null, RdpConversion conversion = RdpConversion.Improved)
    {
        orders ??= RdpOrders.Default;
        return RdpToDp.Epsilon(orders, SampledGaussianRdp.Rdp(samplingRate, noiseMultiplier, orders, rounds), delta, conversion);
    }

    /// <summary>The largest number of rounds whose ε stays within <paramref name="epsilonBudget"/>: 0 if even one round
    /// exceeds it, <see cref="long.MaxValue"/> if no number of rounds does (q = 0).</summary>
    /// <remarks>ε grows with the number of rounds T (each order's RDP is T·r_α), so an exponential then binary search
    /// over T finds the boundary exactly; the per-round RDP is computed once.</remarks>
    public static long MaxRounds(
        double samplingRate, double noiseMultiplier, double epsilonBudget, double delta,
        IReadOnlyList<double>? orders = null, RdpConversion conversion = RdpConversion.Improved)
    {
        if (!(epsilonBudget >= 0)) throw new ArgumentOutOfRangeException(nameof(epsilonBudget), epsilonBudget, "ε must be ≥ 0");
        orders ??= RdpOrders.Default;
        var perRound = SampledGaussianRdp.Rdp(samplingRate, noiseMultiplier, orders);
        bool Fits(long t) => RdpToDp.Epsilon(orders, perRound.Select(r => r * t).ToArray(), delta, conversion).Epsilon <= epsilonBudget;

        if (!Fits(1)) return 0;
        long low = 1, high = 2; // Fits(low) holds; find a high that does not
        while (Fits(high))
        {
            if (high >= long.MaxValue / 4) return long.MaxValue;
            low = high;
            high *= 2;
        }
        while (high - low > 1)
        {
            long middle = low + (high - low) / 2;
            if (Fits(middle)) low = middle; else high = middle;
        }
        return low;
    }

    /// <summary>The smallest noise multiplier σ (to relative precision <paramref name="relativeTolerance"/>) whose ε after
    /// <paramref name="rounds"/> rounds is at most <paramref name="targetEpsilon"/>; the returned σ always meets the
    /// target.</summary>
    /// <remarks>ε falls as σ grows; bisection keeps the upper end, which satisfies the target. Opacus'
    /// get_noise_multiplier bisects too but stops once ε is within 0.01 of the target, so its σ is slightly larger.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The target is not positive, or no σ ≤ 10⁶ reaches it.</exception>
    public static double NoiseMultiplierFor(
        double samplingRate, long rounds, double targetEpsilon, double delta,
        IReadOnlyList<double>? orders = null, RdpConversion conversion = RdpConversion.Improved, double relativeTolerance = 1e-7)
    {
        if (!(targetEpsilon > 0)) throw new ArgumentOutOfRangeException(nameof(targetEpsilon), targetEpsilon, "target ε must be > 0");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rounds);
        orders ??= RdpOrders.Default;
        double Epsilon(double sigma) => EpsilonAfter(samplingRate, sigma, rounds, delta, orders, conversion).Epsilon;

        double high = 1;
        while (Epsilon(high) > targetEpsilon)
        {
            high *= 2;
            if (high > 1e6)
                throw new ArgumentOutOfRangeException(nameof(targetEpsilon), targetEpsilon, "no noise multiplier up to 1e6 reaches this ε");
        }
        double low = 0; // σ = 0 gives ε = ∞
        while (high - low > relativeTolerance * high)
        {
            double middle = (low + high) / 2;
            if (Epsilon(middle) <= targetEpsilon) high = middle; else low = middle;
        }
        return high;
    }
}
