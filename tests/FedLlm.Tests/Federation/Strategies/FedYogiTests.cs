using FedLlm.Federation.Strategies;
using static FedLlm.Tests.Federation.FederationTestData;
using static FedLlm.Tests.Federation.Strategies.FedOptReference;

namespace FedLlm.Tests.Federation.Strategies;

/// <summary>FedYogi (v ← v − (1 − β2)·s·sign(v − s), s = Δ² or m²) against hand arithmetic and the double-precision reference.</summary>
public class FedYogiTests
{
    [Fact]
    public void Paper_rule_three_rounds_match_hand_arithmetic()
    {
        var globals = Run(new FedYogi(Options));

        // A0 by hand, round 1 (τ = 0.09): Δ = 0.56, m = 0.056; Δ² = 0.3136 > v = τ² = 0.0081, so sign(v − Δ²) = −1
        // and v = 0.0081 + 0.01·0.3136 = 0.011236; x = 1 + 0.5·0.056/(√0.011236 + 0.09).
        Assert.Equal(1 + 0.5 * 0.056 / (Math.Sqrt(0.011236) + 0.09), globals[0][0], 6);
        var expected = FedOptReference.Run(Variant.Yogi, Paper, Options);
        for (int r = 0; r < 3; r++) AssertClose(expected[r], globals[r], 2e-6, $"round {r + 1}");
        AssertEachRuleMatters(Variant.Yogi, Paper, margin: 1e-3);
    }

    [Fact]
    public void OpenFedLlm_rule_three_rounds_match_hand_arithmetic()
    {
        var globals = Run(new FedYogi(Options with { OpenFedLlmCompatible = true }));

        // A0 by hand, round 1: Δ = 1/3 (unweighted), m = Δ; m² = 1/9 > τ², so v = 0.0081 + 0.01/9;
        // x = 1 + 0.5·(1/3)/(√v + 0.09).
        Assert.Equal(1 + 0.5 * (1.0 / 3) / (Math.Sqrt(0.0081 + 0.01 / 9) + 0.09), globals[0][0], 6);
        var expected = FedOptReference.Run(Variant.Yogi, OpenFedLlm(Variant.Yogi), Options);
        for (int r = 0; r < 3; r++) AssertClose(expected[r], globals[r], 2e-6, $"round {r + 1}");
        AssertEachRuleMatters(Variant.Yogi, OpenFedLlm(Variant.Yogi), margin: 1e-3);
    }

    [Fact]
    public void Default_options_are_the_papers()
    {
        var strategy = new FedYogi(new FedLlm.Federation.StrategyOptions());
        Assert.Equal("fedyogi", strategy.Name);
        Assert.Equal(1e-3, strategy.ServerLearningRate);
    }
}
