using FedLlm.Data;
using FedLlm.Federation;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using FedLlm.Training;

namespace FedLlm.Tests.Federation;

public class FederatedEvaluationTests
{
    [Fact]
    public async Task Clients_score_the_new_global_on_their_own_data_and_the_strategy_takes_the_example_weighted_mean()
    {
        // Prepare: 4 clients of different sizes (6, 9, 12, 15 examples), all training every round, evaluation every 2
        // rounds of 3, so rounds 1 and 2 (0-based) evaluate and round 0 does not.
        var options = new FederationOptions
        {
            Rounds = 3, TotalClients = 4, ClientsPerRound = 4, LocalSteps = 1, BatchSize = 2, LearningRate = 1e-2, MinLearningRate = 1e-3,
            Seed = 3, EvaluateEvery = 0,
        };
        using var model = FederationCoreTests.AdaptedModel();
        var initial = AdapterTensors.Snapshot(model);
        var shards = FederationCoreTests.Shards(options.TotalClients);
        using var clients = new InProcessClients(model, options, shards, padTokenId: 0);
        using var strategy = new EvaluateOnClients(new FedAvg(), every: 2, rounds: options.Rounds);
        using var server = new FederationServer(strategy, options, initial, clients);

        // Execute
        while (server.NextRound < options.Rounds) await server.RunRoundAsync();

        // Assert: the last round's federated loss is Σ n_i·loss_i / Σ n_i over each client's own data, recomputed here.
        Assert.Null(server.History[0].FederatedEvaluation);
        Assert.NotNull(server.History[1].FederatedEvaluation);
        AdapterTensors.Load(model, server.Global);
        var losses = shards.Select(s => new SftClientDataset(s, 0).Evaluate(model, options.BatchSize)["loss"]).ToList();
        double expected = losses.Select((l, i) => l * shards[i].Count).Sum() / shards.Sum(s => s.Count);
        double unweighted = losses.Average();
        double reported = server.History[2].FederatedEvaluation!["loss"];
        Assert.Equal(expected, reported, 9);
        Assert.True(Math.Abs(expected - unweighted) > 1e-6, "the shards must differ enough that weighting matters");
    }
}
