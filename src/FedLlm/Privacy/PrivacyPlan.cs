using FedLlm.Federation;

namespace FedLlm.Privacy;

/// <summary>
/// The privacy side of a run, settled before the first round: the sampling rate q, the noise multiplier σ (given, or
/// derived from the ε budget), δ, and how many rounds run. ε after any round is a pure function of these
/// (<see cref="EpsilonAfter"/>), so a resumed run reports the same numbers without keeping accountant state.
/// </summary>
/// <remarks>
/// <para>Client-level DP: one record is one client. q = m / N with m = clients per round and N = all clients, as in
/// DP-FedAvg (McMahan et al. 2018). The RDP of the sampled Gaussian mechanism assumes Poisson sampling (each client
/// independently with probability q); FedLlm samples exactly m clients uniformly without replacement, which this
/// approximates (the same caveat as TF-Privacy's and Opacus' numbers for fixed-size batches). The noise is calibrated
/// to the fixed denominator m, which Poisson sampling also needs.</para>
/// <para>Local DP (<see cref="PrivacyMode.Local"/>) is accounted against the server, which knows who took part, so no
/// amplification by sampling: q = 1 over every round, the guarantee of a client that is sampled each round (a client
/// sampled less often is better off). Sensitivity is C (add/remove of one client's update), as for the central modes.</para>
/// </remarks>
public sealed record PrivacyPlan(PrivacyMode Mode, double SamplingRate, double NoiseMultiplier, double Delta, double? EpsilonBudget,
    int ClientsPerRound, int Rounds, int? StopAfterRounds)
{
    /// <summary>The rounds that run: all, or <see cref="StopAfterRounds"/> when the budget ends the run earlier.</summary>
    public int RoundsToRun => StopAfterRounds ?? Rounds;

    /// <summary>(ε, δ) after <paramref name="rounds"/> rounds.</summary>
    public PrivacySpent EpsilonAfter(int rounds) =>
        rounds <= 0 ? new PrivacySpent(0, Delta, double.NaN) : RdpAccountant.EpsilonAfter(SamplingRate, NoiseMultiplier, rounds, Delta);

    /// <summary>The settled plan for <paramref name="options"/> under <paramref name="federation"/>.</summary>
    /// <exception cref="ArgumentException">The budget cannot hold the run (naming the keys to change), or adaptive
    /// clipping's count noise is too small for σ.</exception>
    public static PrivacyPlan Create(PrivacyOptions options, FederationOptions federation)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(federation);
        int m = Math.Min(federation.ClientsPerRound, federation.TotalClients);
        double q = options.Mode == PrivacyMode.Local ? 1.0 : (double)m / federation.TotalClients;
        int rounds = federation.Rounds;
        int? stop = null;
        double sigma;
        if (options.NoiseMultiplier is { } given)
        {
            sigma = given;
            if (options.TargetEpsilon is { } budget)
            {
                var spent = RdpAccountant.EpsilonAfter(q, sigma, rounds, options.Delta);
                if (spent.Epsilon > budget)
                {
                    long fits = RdpAccountant.MaxRounds(q, sigma, budget, options.Delta);
                    if (!options.StopAtBudget || fits == 0)
                        throw new ArgumentException(
                            $"privacy.target_epsilon {budget}: with σ = {sigma}, q = {q:G4} and δ = {options.Delta}, ε reaches {spent.Epsilon:G4} after " +
                            $"{rounds} rounds and the budget holds only {fits}; raise privacy.noise_multiplier, lower federation.rounds, " +
                            (fits == 0 ? "or raise the budget" : "or set privacy.stop_at_budget to end the run at the budget"));
                    stop = (int)fits;
                }
            }
        }
        else
        {
            double budget = options.TargetEpsilon ?? throw new ArgumentException("privacy: set privacy.noise_multiplier or privacy.target_epsilon");
            try
            {
                sigma = RdpAccountant.NoiseMultiplierFor(q, rounds, budget, options.Delta);
            }
            catch (ArgumentOutOfRangeException)
            {
                throw new ArgumentException($"privacy.target_epsilon {budget}: no noise multiplier up to 1e6 reaches it over {rounds} rounds at q = {q:G4}");
            }
        }
        if (options.Mode == PrivacyMode.ServerAdaptive)
        {
            var adaptive = Adaptive(options, sigma, m);
            try
            {
                adaptive.Validate();
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"privacy (server-adaptive, σ = {sigma:G4}): {e.Message}; set privacy.clipped_count_stddev above σ/2 or use more clients per round");
            }
        }
        return new PrivacyPlan(options.Mode, q, sigma, options.Delta, options.TargetEpsilon, m, rounds, stop);
    }

    /// <summary>The adaptive-clipping settings of <paramref name="options"/> for round noise multiplier <paramref name="sigma"/>.</summary>
    internal static AdaptiveClippingOptions Adaptive(PrivacyOptions options, double sigma, int clientsPerRound) => new()
    {
        NoiseMultiplier = sigma,
        ClientsPerRound = clientsPerRound,
        InitialClippingNorm = options.ClippingNorm,
        TargetUnclippedQuantile = options.TargetUnclippedQuantile,
        ClippingNormLearningRate = options.ClippingNormLearningRate,
        ClippedCountStddev = options.ClippedCountStddev,
    };
}
