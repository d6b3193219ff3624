using FedLlm.Federation;
using static FedLlm.Tests.Federation.FederationTestData;

namespace FedLlm.Tests.Federation.Strategies;

/// <summary>
/// Reddi et al.'s Algorithm 2 written out in doubles over the shared script, with each OpenFedLLM quirk as its own
/// switch so the tests can show that every quirk changes the numbers (and would be caught if lost or misapplied).
/// </summary>
internal static class FedOptReference
{
    public enum Variant { Adagrad, Yogi, Adam }

    public sealed record Rules(bool Weighted, bool SecondMomentFromM, bool FirstMomentIsDeltaInFirstRound, bool NoMomentum);

    public static readonly Rules Paper = new(Weighted: true, SecondMomentFromM: false, FirstMomentIsDeltaInFirstRound: false, NoMomentum: false);

    public static Rules OpenFedLlm(Variant variant) =>
        new(Weighted: false, SecondMomentFromM: true, FirstMomentIsDeltaInFirstRound: true, NoMomentum: variant == Variant.Adagrad);

    /// <summary>Options that make every term matter on the script's Δ ≈ 0.1–1: τ comparable to |Δ|, η large
    /// enough that x moves visibly. τ = 0.09, not 0.1: the script's round-1 Δ of key B[1] is exactly 0.1, and
    /// Δ² = τ² would put Yogi's sign(v − Δ²) on its discontinuity, where float32 and double round to different sides.</summary>
    public static readonly StrategyOptions Options = new() { ServerLearningRate = 0.5, Tau = 0.09, Beta1 = 0.9, Beta2 = 0.99 };

    public static List<double[]> Run(Variant variant, Rules rules, StrategyOptions options)
    {
        double eta = options.ServerLearningRate!.Value, tau = options.Tau, beta1 = options.Beta1, beta2 = options.Beta2;
        var x = (double[])X0.Clone();
        double[]? m = null, v = null;
        var results = new List<double[]>();
        foreach (var clients in Rounds)
        {
            var weights = clients.Select(c => rules.Weighted ? (double)c.Count : 1.0).ToArray();
            double total = weights.Sum();
            bool first = m is null;
            var nextM = new double[5];
            var nextV = new double[5];
            var nextX = new double[5];
            for (int k = 0; k < 5; k++)
            {
                double delta = 0;
                for (int i = 0; i < clients.Length; i++) delta += weights[i] / total * (clients[i].Weights[k] - x[k]);
                double previousM = first ? 0 : m![k];
                double previousV = first ? tau * tau : v![k];
                double mk = rules.NoMomentum || (rules.FirstMomentIsDeltaInFirstRound && first)
                    ? delta
                    : beta1 * previousM + (1 - beta1) * delta;
                double s = rules.SecondMomentFromM ? mk * mk : delta * delta;
                double vk = variant switch
                {
                    Variant.Adagrad => previousV + s,
                    Variant.Yogi => previousV - (1 - beta2) * s * Math.Sign(previousV - s),
                    _ => beta2 * previousV + (1 - beta2) * s,
                };
                nextM[k] = mk;
                nextV[k] = vk;
                nextX[k] = x[k] + eta * mk / (Math.Sqrt(vk) + tau);
            }
            (m, v, x) = (nextM, nextV, nextX);
            results.Add(x);
        }
        return results;
    }

    /// <summary>Every single-quirk change of <paramref name="rules"/> that applies to the variant moves round 3 by more
    /// than <paramref name="margin"/>, so the tolerance of the tests cannot hide a lost or extra quirk.</summary>
    public static void AssertEachRuleMatters(Variant variant, Rules rules, double margin)
    {
        var baseline = Run(variant, rules, Options)[2];
        var flips = new List<(string, Rules)>
        {
            ("weighting", rules with { Weighted = !rules.Weighted }),
            ("momentum", rules with { NoMomentum = !rules.NoMomentum }),
        };
        // Without momentum m = Δ, so m² and Δ² coincide and the first round is like every other.
        if (!rules.NoMomentum)
        {
            flips.Add(("v from m² vs Δ²", rules with { SecondMomentFromM = !rules.SecondMomentFromM }));
            flips.Add(("m = Δ in the first round", rules with { FirstMomentIsDeltaInFirstRound = !rules.FirstMomentIsDeltaInFirstRound }));
        }
        foreach (var (name, flipped) in flips)
            Assert.True(MaxAbsDifference(baseline, Run(variant, flipped, Options)[2]) > margin,
                $"{variant}: flipping '{name}' does not change the script's result by more than {margin}");
    }
}
