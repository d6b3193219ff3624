using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Strategies;
using static FedLlm.Tests.Federation.FederationTestData;

namespace FedLlm.Tests.Federation.Strategies;

public class FedAvgTests
{
    [Fact]
    public void Two_rounds_match_the_example_weighted_mean_computed_by_hand()
    {
        // Prepare: the shared script; FedAvg ignores the old global, so each round is its own weighted mean.
        var strategy = new FedAvg();

        // Execute
        var globals = Run(strategy, rounds: 2);

        // Assert. Round 1: p = 10/100, 30/100, 60/100.
        //   A0 = .1·1.2 + .3·0.8 + .6·2.0 = .12 + .24 + 1.2 = 1.56    A1 = .1·(−1) + .3·(−2.6) + .6·0 = −0.88
        //   B0 = .1·.5 + 0 + .6·1 = 0.65   B1 = .1·1 − .3·1 + .6·.5 = 0.1   B2 = .1·2 + .3·4 + .6·3 = 3.2
        AssertClose(new[] { 1.56, -0.88, 0.65, 0.1, 3.2 }, globals[0], 1e-6, "round 1");
        // Round 2: p_b = 30/90 = 1/3, p_c = 2/3.
        //   A = (1/3)·[0, 3] + (2/3)·[3, 0] = [2, 1];   B = (1/3)·[3, 0, −3] + (2/3)·[0, 3, 3] = [1, 2, 1]
        AssertClose(new[] { 2.0, 1.0, 1.0, 2.0, 1.0 }, globals[1], 1e-6, "round 2");

        // The inputs discriminate: the unweighted mean of round 1 would give A0 = (1.2 + 0.8 + 2)/3 = 1.333…
        Assert.True(Math.Abs(1.56 - 4.0 / 3) > 0.1);
    }

    [Fact]
    public void Identical_updates_return_them()
    {
        var y = new[] { 0.3, -0.7, 1.1, 2.5, -4.0 };
        var updates = new[] { ("a", 10L), ("b", 30L), ("c", 60L) }
            .Select(c => Update(new ScriptedClient(c.Item1, c.Item2, y))).ToList();

        var result = new FedAvg().Aggregate(0, Adapter(X0), updates);

        // 0.1·y + 0.3·y + 0.6·y rounds in float32, so within one ulp rather than exactly.
        AssertClose(y, Flat(result), 1e-6, "mean of identical updates");
    }

    [Fact]
    public void One_client_returns_that_clients_weights_exactly()
    {
        var client = Rounds[0][1];
        var update = Update(client);

        var result = new FedAvg().Aggregate(0, Adapter(X0), new[] { update });

        AssertBitEqual(update.Weights, result, "single client");
    }

    [Fact]
    public void Client_order_does_not_change_a_single_bit()
    {
        var forward = Rounds[0].Select(c => Update(c)).ToList();
        var backward = Enumerable.Reverse(forward).ToList();

        var one = new FedAvg().Aggregate(0, Adapter(X0), forward);
        var two = new FedAvg().Aggregate(0, Adapter(X0), backward);

        AssertBitEqual(one, two, "reversed client order");
    }

    [Fact]
    public void A_client_with_zero_examples_has_no_weight_and_all_zero_is_an_error()
    {
        var clients = new[]
        {
            new ScriptedClient("a", 0, new[] { 9.0, 9.0, 9.0, 9.0, 9.0 }),
            new ScriptedClient("b", 5, new[] { 1.0, 2.0, 3.0, 4.0, 5.0 }),
        };

        var result = new FedAvg().Aggregate(0, Adapter(X0), clients.Select(c => Update(c)).ToList());
        AssertClose(clients[1].Weights, Flat(result), 0, "zero-weight client ignored");

        var zeros = clients.Select(c => Update(c with { Count = 0 })).ToList();
        var error = Assert.Throws<AggregationException>(() => new FedAvg().Aggregate(0, Adapter(X0), zeros));
        Assert.Contains("zero", error.Message);
    }

    [Fact]
    public void Plans_plain_local_training()
    {
        var plan = new FedAvg().ConfigureTrain(4, 2e-5);
        Assert.Equal((4, 2e-5), (plan.Round, plan.LearningRate));
        Assert.Empty(plan.Hooks);
        Assert.Empty(plan.Config);
        Assert.Empty(plan.TensorSets);
        Assert.Empty(plan.ReturnedTensorSets);
    }
}
