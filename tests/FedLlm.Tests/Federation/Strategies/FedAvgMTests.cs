using FedLlm.Federation;
using FedLlm.Federation.Strategies;
using static FedLlm.Tests.Federation.FederationTestData;

namespace FedLlm.Tests.Federation.Strategies;

public class FedAvgMTests
{
    /// <summary>FedAvgM written out in doubles: Δ = Σ p_i (y_i − x); paper m ← β·m + Δ, x ← x + η·m; OpenFedLLM
    /// m ← Δ first, then β·m + (1 − β)·Δ, x ← x + m.</summary>
    static List<double[]> Reference(bool openFedLlm, double beta = 0.9, double eta = 1.0)
    {
        var x = (double[])X0.Clone();
        double[]? m = null;
        var results = new List<double[]>();
        foreach (var clients in Rounds)
        {
            double total = clients.Sum(c => (double)c.Count);
            var delta = Enumerable.Range(0, 5).Select(k => clients.Sum(c => c.Count / total * (c.Weights[k] - x[k]))).ToArray();
            m = m is null
                ? delta
                : Enumerable.Range(0, 5).Select(k => openFedLlm ? beta * m[k] + (1 - beta) * delta[k] : beta * m[k] + delta[k]).ToArray();
            x = Enumerable.Range(0, 5).Select(k => x[k] + (openFedLlm ? 1.0 : eta) * m[k]).ToArray();
            results.Add(x);
        }
        return results;
    }

    [Fact]
    public void Paper_rule_three_rounds_match_hand_arithmetic()
    {
        var globals = Run(new FedAvgM(new StrategyOptions()));

        // A0 by hand. Round 1: Δ = .1·0.2 + .3·(−0.2) + .6·1.0 = 0.56, m = 0.56, x = 1 + 0.56 = 1.56 (= FedAvg).
        Assert.Equal(1.56, globals[0][0], 6);
        // Round 2: Δ = (1/3)(0 − 1.56) + (2/3)(3 − 1.56) = 0.44; m = 0.9·0.56 + 0.44 = 0.944; x = 2.504.
        Assert.Equal(2.504, globals[1][0], 5);
        var expected = Reference(openFedLlm: false);
        for (int r = 0; r < 3; r++) AssertClose(expected[r], globals[r], 2e-6, $"round {r + 1}");
        // The script discriminates: the damped rule gives another round-2 answer (2.108, below).
        Assert.True(MaxAbsDifference(expected[1], Reference(openFedLlm: true)[1]) > 0.1);
    }

    [Fact]
    public void OpenFedLlm_rule_three_rounds_match_hand_arithmetic()
    {
        var globals = Run(new FedAvgM(new StrategyOptions { OpenFedLlmCompatible = true }));

        // A0: round 1 m = Δ = 0.56, x = 1.56; round 2 m = 0.9·0.56 + 0.1·0.44 = 0.548, x = 1.56 + 0.548 = 2.108.
        Assert.Equal(1.56, globals[0][0], 6);
        Assert.Equal(2.108, globals[1][0], 5);
        var expected = Reference(openFedLlm: true);
        for (int r = 0; r < 3; r++) AssertClose(expected[r], globals[r], 2e-6, $"round {r + 1}");
    }

    [Fact]
    public void Server_learning_rate_scales_the_step_and_is_refused_in_OpenFedLlm_mode()
    {
        var globals = Run(new FedAvgM(new StrategyOptions { ServerLearningRate = 0.5, ServerMomentum = 0.5 }));

        // A0 round 1: x = 1 + 0.5·0.56 = 1.28.
        Assert.Equal(1.28, globals[0][0], 6);
        var expected = Reference(openFedLlm: false, beta: 0.5, eta: 0.5);
        for (int r = 0; r < 3; r++) AssertClose(expected[r], globals[r], 2e-6, $"round {r + 1}");

        Assert.Throws<ArgumentException>(() =>
            new FedAvgM(new StrategyOptions { OpenFedLlmCompatible = true, ServerLearningRate = 0.5 }));
    }
}
