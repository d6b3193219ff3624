using FedLlm.Federation;
using FedLlm.Federation.Strategies;
using static FedLlm.Tests.Federation.FederationTestData;
using static FedLlm.Tests.Federation.Strategies.FedOptReference;

namespace FedLlm.Tests.Federation.Strategies;

/// <summary>FedAdam (v ← β2·v + (1 − β2)·s, s = Δ² or m²) against hand arithmetic and the double-precision reference.</summary>
public class FedAdamTests
{
    [Fact]
    public void Paper_rule_three_rounds_match_hand_arithmetic()
    {
        var globals = Run(new FedAdam(Options));

        // A0 by hand, round 1 (τ = 0.09): Δ = .1·0.2 + .3·(−0.2) + .6·1.0 = 0.56; m = 0.1·0.56 = 0.056;
        // v = 0.99·τ² + 0.01·Δ² = 0.99·0.0081 + 0.01·0.3136 = 0.008019 + 0.003136 = 0.011155;
        // x = 1 + 0.5·0.056/(√0.011155 + 0.09).
        Assert.Equal(1 + 0.5 * 0.056 / (Math.Sqrt(0.011155) + 0.09), globals[0][0], 6);
        var expected = FedOptReference.Run(Variant.Adam, Paper, Options);
        for (int r = 0; r < 3; r++) AssertClose(expected[r], globals[r], 2e-6, $"round {r + 1}");
        AssertEachRuleMatters(Variant.Adam, Paper, margin: 1e-3);
    }

    [Fact]
    public void OpenFedLlm_rule_three_rounds_match_hand_arithmetic()
    {
        var globals = Run(new FedAdam(Options with { OpenFedLlmCompatible = true }));

        // A0 by hand, round 1: Δ = unweighted ((1.2 − 1) + (0.8 − 1) + (2 − 1))/3 = 1/3; m = Δ (first round);
        // v = 0.99·τ² + 0.01·m² = 0.008019 + 0.01/9; x = 1 + 0.5·(1/3)/(√v + 0.09).
        Assert.Equal(1 + 0.5 * (1.0 / 3) / (Math.Sqrt(0.008019 + 0.01 / 9) + 0.09), globals[0][0], 6);
        var expected = FedOptReference.Run(Variant.Adam, OpenFedLlm(Variant.Adam), Options);
        for (int r = 0; r < 3; r++) AssertClose(expected[r], globals[r], 2e-6, $"round {r + 1}");
        AssertEachRuleMatters(Variant.Adam, OpenFedLlm(Variant.Adam), margin: 1e-3);
    }

    [Fact]
    public void Default_options_are_the_papers()
    {
        var strategy = new FedAdam(new FedLlm.Federation.StrategyOptions());
        Assert.Equal("fedadam", strategy.Name);
        Assert.Equal(1e-3, strategy.ServerLearningRate);
    }

    [Theory]
    [InlineData("fedadam")]
    [InlineData("fedavgm")]
    public void The_server_rate_decay_scales_eta_by_the_clients_schedule(string name)
    {
        // Prepare: clients at half their first-round rate, so η_r = η/2; 0.02·0.5 is exactly 0.01 in binary64.
        IFederatedStrategy Create(double eta, bool decay) => StrategyFactory.Create(name, Options with
        {
            ServerLearningRate = eta, DecayServerLearningRate = decay, ClientPeakLearningRate = decay ? 1e-3 : 0,
        });
        List<double[]> Rounds(IFederatedStrategy strategy)
        {
            var results = new List<double[]>();
            IReadOnlyDictionary<string, TorchSharp.torch.Tensor> global = Adapter(X0);
            for (int r = 0; r < 3; r++)
            {
                strategy.ConfigureTrain(r, 5e-4);
                global = strategy.Aggregate(r, global, FederationTestData.Rounds[r].Select(c => Update(c)).ToList());
                results.Add(Flat(global));
            }
            return results;
        }

        // Execute
        var decayed = Rounds(Create(0.02, decay: true));
        var halved = Rounds(Create(0.01, decay: false));
        var constant = Rounds(Create(0.02, decay: false));

        // Assert
        for (int r = 0; r < 3; r++) Assert.Equal(halved[r], decayed[r]);
        Assert.NotEqual(constant[2], decayed[2]);
        // Without the clients' first-round rate the decay cannot be computed: refused up front.
        Assert.Throws<ArgumentException>(() => StrategyFactory.Create(name, Options with { DecayServerLearningRate = true }));
    }
}
