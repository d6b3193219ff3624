using FedLlm.Federation.Strategies;
using static FedLlm.Tests.Federation.FederationTestData;
using static FedLlm.Tests.Federation.Strategies.FedOptReference;

namespace FedLlm.Tests.Federation.Strategies;

/// <summary>FedAdagrad (v ← v + s, s = Δ² or m²) against hand arithmetic and the double-precision reference.</summary>
public class FedAdagradTests
{
    [Fact]
    public void Paper_rule_three_rounds_match_hand_arithmetic()
    {
        var globals = Run(new FedAdagrad(Options));

        // A0 by hand, round 1 (τ = 0.09): Δ = 0.56, m = 0.1·0.56 = 0.056 (the paper's m has momentum for all three);
        // v = τ² + Δ² = 0.0081 + 0.3136 = 0.3217; x = 1 + 0.5·0.056/(√0.3217 + 0.09).
        Assert.Equal(1 + 0.5 * 0.056 / (Math.Sqrt(0.3217) + 0.09), globals[0][0], 6);
        var expected = FedOptReference.Run(Variant.Adagrad, Paper, Options);
        for (int r = 0; r < 3; r++) AssertClose(expected[r], globals[r], 2e-6, $"round {r + 1}");
        AssertEachRuleMatters(Variant.Adagrad, Paper, margin: 1e-3);
    }

    [Fact]
    public void OpenFedLlm_rule_three_rounds_match_hand_arithmetic()
    {
        var globals = Run(new FedAdagrad(Options with { OpenFedLlmCompatible = true }));

        // A0 by hand, round 1: Δ = 1/3 (unweighted); m = Δ (no momentum, every round); v = 0.0081 + 1/9;
        // x = 1 + 0.5·(1/3)/(√v + 0.09).
        Assert.Equal(1 + 0.5 * (1.0 / 3) / (Math.Sqrt(0.0081 + 1.0 / 9) + 0.09), globals[0][0], 6);
        var expected = FedOptReference.Run(Variant.Adagrad, OpenFedLlm(Variant.Adagrad), Options);
        for (int r = 0; r < 3; r++) AssertClose(expected[r], globals[r], 2e-6, $"round {r + 1}");
        AssertEachRuleMatters(Variant.Adagrad, OpenFedLlm(Variant.Adagrad), margin: 1e-3);
    }

    [Fact]
    public void Default_options_are_the_papers()
    {
        var strategy = new FedAdagrad(new FedLlm.Federation.StrategyOptions());
        Assert.Equal("fedadagrad", strategy.Name);
        Assert.Equal(1e-3, strategy.ServerLearningRate);
    }
}
