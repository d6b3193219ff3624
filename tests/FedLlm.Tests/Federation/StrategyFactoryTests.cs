using FedLlm.Federation;
using FedLlm.Federation.Strategies;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation;

public class StrategyFactoryTests
{
    [Theory]
    [InlineData("fedavg", typeof(FedAvg))]
    [InlineData("fedprox", typeof(FedProx))]
    [InlineData("scaffold", typeof(Scaffold))]
    [InlineData("fedavgm", typeof(FedAvgM))]
    [InlineData("fedadagrad", typeof(FedAdagrad))]
    [InlineData("fedyogi", typeof(FedYogi))]
    [InlineData("FedYogi", typeof(FedYogi))]
    [InlineData(" fedadam ", typeof(FedAdam))]
    public void Creates_each_of_the_seven_by_name(string name, Type type)
    {
        var strategy = StrategyFactory.Create(name, new StrategyOptions { TotalClients = 20 });
        Assert.IsType(type, strategy);
        Assert.Equal(name.Trim().ToLowerInvariant(), strategy.Name);
    }

    [Fact]
    public void Lists_exactly_the_seven_names()
    {
        Assert.Equal(new[] { "fedavg", "fedprox", "scaffold", "fedavgm", "fedadagrad", "fedyogi", "fedadam" }, StrategyFactory.Names);
    }

    [Fact]
    public void An_unknown_name_is_an_error_that_lists_the_seven()
    {
        // "fedadgrad" is OpenFedLLM's typo; it must not be silently accepted either.
        var error = Assert.Throws<ArgumentException>(() => StrategyFactory.Create("fedadgrad", new StrategyOptions()));
        Assert.Contains("'fedadgrad'", error.Message);
        foreach (var name in StrategyFactory.Names) Assert.Contains(name, error.Message);
    }

    [Fact]
    public void Invalid_options_fail_with_every_problem_at_once()
    {
        var options = new StrategyOptions { ProximalMu = -1, Beta1 = 1, Beta2 = -0.1, Tau = 0, ServerLearningRate = 0, ServerMomentum = 1.5, TotalClients = -2 };
        var error = Assert.Throws<ArgumentException>(() => StrategyFactory.Create("fedavg", options));
        foreach (var field in new[] { "ProximalMu", "Beta1", "Beta2", "Tau", "ServerLearningRate", "ServerMomentum", "TotalClients" })
            Assert.Contains(field, error.Message);
    }

    [Fact]
    public void Scaffold_needs_the_total_client_count()
    {
        var error = Assert.Throws<ArgumentException>(() => StrategyFactory.Create("scaffold", new StrategyOptions()));
        Assert.Contains("TotalClients", error.Message);
    }

    [Fact]
    public void Defaults_are_the_literature_values()
    {
        var options = new StrategyOptions();
        Assert.Equal((0.01, null, 0.9, 0.9, 0.99, 1e-3, 0, false),
            (options.ProximalMu, options.ServerLearningRate, options.ServerMomentum, options.Beta1, options.Beta2, options.Tau,
             options.TotalClients, options.OpenFedLlmCompatible));
        Assert.Equal(1e-3, StrategyOptions.DefaultFedOptServerLearningRate);
        Assert.Equal(1.0, StrategyOptions.DefaultFedAvgMServerLearningRate);
    }

    [Fact]
    public void All_seven_run_in_both_modes_including_FedAdagrad()
    {
        foreach (var openFedLlm in new[] { false, true })
            foreach (var name in StrategyFactory.Names)
            {
                var strategy = StrategyFactory.Create(name, new StrategyOptions { TotalClients = 3, OpenFedLlmCompatible = openFedLlm });
                var updates = Rounds[0].Select(c => Update(c, Adapter(new double[5]))).ToList();
                var result = strategy.Aggregate(0, Adapter(X0), updates);
                Assert.True(MaxAbsDifference(Flat(result), X0) > 0, $"{name} (OpenFedLLM mode {openFedLlm}) did not move x");
            }
    }
}
