using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Strategies;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation.Strategies;

public class ScaffoldTests
{
    static Scaffold Create(int totalClients = 4) => new(new StrategyOptions { TotalClients = totalClients });

    static ClientUpdate WithDelta(string id, long count, double[] weights, double[] controlDelta) =>
        FederationTestData.WithTensorSet(new(id, Adapter(weights), count), Adapter(controlDelta));

    [Fact]
    public void Two_rounds_with_four_clients_two_sampled_match_hand_arithmetic()
    {
        // Prepare: N = 4 clients in all, two sampled per round, different shard sizes.
        var strategy = Create(totalClients: 4);
        var x0 = Adapter(X0);
        var round1 = new[]
        {
            WithDelta("a", 10, new[] { 1.2, -1.0, 0.5, 1.0, 2.0 }, new[] { 0.4, -0.8, 0.0, 1.2, -0.4 }),
            WithDelta("b", 30, new[] { 0.8, -2.6, 0.0, -1.0, 4.0 }, new[] { 0.8, 0.4, -0.4, 0.0, 2.0 }),
        };
        // Round 2 lists c before a, so the sort by client id has something to do.
        var round2 = new[]
        {
            WithDelta("c", 60, new[] { 7.0, 0.0, 0.0, 7.0, 14.0 }, new[] { -0.4, 0.4, 0.8, 0.0, 0.0 }),
            WithDelta("a", 10, new[] { 0.0, 7.0, 7.0, 0.0, -7.0 }, new[] { 0.0, 0.4, 0.4, -0.4, 0.4 }),
        };

        // Execute
        var x1 = strategy.Aggregate(0, x0, round1);
        var c1 = Flat(StateC(strategy));
        var x2 = strategy.Aggregate(1, x1, round2);
        var c2 = Flat(StateC(strategy));

        // Assert. Round 1: x = .25·y_a + .75·y_b (10 and 30 examples):
        //   A = [.3 + .6, −.25 − 1.95] = [0.9, −2.2];  B = [.125 + 0, .25 − .75, .5 + 3] = [0.125, −0.5, 3.5]
        AssertClose(new[] { 0.9, -2.2, 0.125, -0.5, 3.5 }, Flat(x1), 1e-6, "x after round 1");
        // c = 0 + (Δc_a + Δc_b)/N with N = 4 (not |S| = 2): [1.2, −0.4, −0.4, 1.2, 1.6]/4
        AssertClose(new[] { 0.3, -0.1, -0.1, 0.3, 0.4 }, c1, 1e-7, "c after round 1");
        // Round 2: x = (1/7)·y_a + (6/7)·y_c:  A = [0 + 6, 1 + 0] = [6, 1];  B = [1 + 0, 0 + 6, −1 + 12] = [1, 6, 11]
        AssertClose(new[] { 6.0, 1.0, 1.0, 6.0, 11.0 }, Flat(x2), 1e-5, "x after round 2");
        // c = c1 + (Δc_c + Δc_a)/4 = c1 + [−0.4, 0.8, 1.2, −0.4, 0.4]/4
        AssertClose(new[] { 0.2, 0.1, 0.2, 0.2, 0.5 }, c2, 1e-7, "c after round 2");
    }

    static IReadOnlyDictionary<string, Tensor> StateC(Scaffold strategy) =>
        strategy.State.ToDictionary(kv => kv.Key["c/".Length..], kv => kv.Value);

    [Fact]
    public void Plans_carry_an_empty_c_before_the_first_round_then_a_copy_of_c()
    {
        var strategy = Create();
        var before = strategy.ConfigureTrain(0, 1e-3);
        Assert.Equal(new[] { "scaffold" }, before.Hooks);
        Assert.Equal(new[] { "control_delta" }, before.ReturnedTensorSets);
        Assert.Empty(before.TensorSet("server_control"));
        Assert.Empty(before.Config);

        strategy.Aggregate(0, Adapter(X0), new[]
        {
            WithDelta("a", 1, X0, new[] { 0.4, 0.8, 1.2, 1.6, 2.0 }),
        });
        var plan = strategy.ConfigureTrain(1, 1e-3);
        AssertClose(new[] { 0.1, 0.2, 0.3, 0.4, 0.5 }, Flat(plan.TensorSet("server_control")), 1e-7, "planned c");

        // The instructions hold a copy: a client scribbling on it does not move the server's c.
        plan.TensorSet("server_control")[FederationTestData.KeyA].add_(100);
        AssertClose(new[] { 0.1, 0.2, 0.3, 0.4, 0.5 }, Flat(strategy.ConfigureTrain(2, 1e-3).TensorSet("server_control")), 1e-7, "c after scribble");
    }

    [Fact]
    public void Client_control_update_matches_hand_arithmetic()
    {
        // x = [1, 2 | 0, 0, 0], y = [0.9, 2.2 | 0.5, −0.5, 0], c = [0.1, −0.2 | 0, 0.3, 0], c_i = [0.05, 0.1 | 0, 0, 0.2],
        // K = 4, lr = 0.5, so K·lr = 2.
        var x = Adapter(new[] { 1.0, 2.0, 0.0, 0.0, 0.0 });
        var y = Adapter(new[] { 0.9, 2.2, 0.5, -0.5, 0.0 });
        var c = Adapter(new[] { 0.1, -0.2, 0.0, 0.3, 0.0 });
        var ci = Adapter(new[] { 0.05, 0.1, 0.0, 0.0, 0.2 });

        var (newControl, delta) = Scaffold.ClientControlUpdate(x, y, c, ci, localSteps: 4, learningRate: 0.5);

        // (x − y)/2 = [0.05, −0.1 | −0.25, 0.25, 0];  c − c_i = [0.05, −0.3 | 0, 0.3, −0.2]
        // c_i⁺ = [0, 0.2 | −0.25, −0.05, 0.2];  Δc_i = c_i⁺ − c_i = [−0.05, 0.1 | −0.25, −0.05, 0]
        AssertClose(new[] { 0.0, 0.2, -0.25, -0.05, 0.2 }, Flat(newControl), 1e-7, "c_i+");
        AssertClose(new[] { -0.05, 0.1, -0.25, -0.05, 0.0 }, Flat(delta), 1e-7, "delta c_i");

        // The correction a client applies each step: c − c_i.
        AssertClose(new[] { 0.05, -0.3, 0.0, 0.3, -0.2 }, Flat(Scaffold.Correction(c, ci)), 1e-7, "correction");
    }

    [Fact]
    public void Missing_control_keys_count_as_zeros_in_the_first_round()
    {
        var x = Adapter(new[] { 1.0, 2.0, 0.0, 0.0, 0.0 });
        var y = Adapter(new[] { 0.9, 2.2, 0.5, -0.5, 0.0 });
        var empty = new Dictionary<string, Tensor>();

        var (newControl, delta) = Scaffold.ClientControlUpdate(x, y, empty, empty, localSteps: 4, learningRate: 0.5);

        // c = c_i = 0: c_i⁺ = Δc_i = (x − y)/(K·lr) = [0.05, −0.1, −0.25, 0.25, 0]
        AssertClose(new[] { 0.05, -0.1, -0.25, 0.25, 0.0 }, Flat(newControl), 1e-7, "c_i+");
        AssertClose(new[] { 0.05, -0.1, -0.25, 0.25, 0.0 }, Flat(delta), 1e-7, "delta c_i");
        Assert.Empty(Scaffold.Correction(empty, empty));
        var onlyClient = Scaffold.Correction(empty, newControl);
        AssertClose(new[] { -0.05, 0.1, 0.25, -0.25, 0.0 }, Flat(onlyClient), 1e-7, "−c_i when c is empty");
    }

    [Fact]
    public void Zero_control_deltas_and_one_client_return_that_clients_weights()
    {
        var zeros = new[] { 0.0, 0.0, 0.0, 0.0, 0.0 };
        var update = WithDelta("b", 30, Rounds[0][1].Weights, zeros);

        var result = Create().Aggregate(0, Adapter(X0), new[] { update });

        AssertBitEqual(update.Weights, result, "single client");
    }

    [Fact]
    public void Rejects_missing_control_delta_and_more_updates_than_clients()
    {
        var noDelta = new ClientUpdate("a", Adapter(X0), 10);
        var error = Assert.Throws<AggregationException>(() => Create().Aggregate(0, Adapter(X0), new[] { noDelta }));
        Assert.Equal("a", error.ClientId);
        Assert.Contains("control delta", error.Message);

        var three = new[] { "a", "b", "c" }.Select(id => WithDelta(id, 1, X0, X0)).ToList();
        Assert.Throws<AggregationException>(() => Create(totalClients: 2).Aggregate(0, Adapter(X0), three));

        var badDelta = FederationTestData.WithTensorSet(new ClientUpdate("b", Adapter(X0), 10),
            new Dictionary<string, Tensor> { [FederationTestData.KeyA] = zeros(1, 2) });
        var missing = Assert.Throws<AggregationException>(() => Create().Aggregate(0, Adapter(X0), new[] { badDelta }));
        Assert.Equal(("b", FederationTestData.KeyB), (missing.ClientId, missing.Key));
    }

    [Fact]
    public void Client_functions_reject_inconsistent_inputs()
    {
        var x = Adapter(X0);
        var empty = new Dictionary<string, Tensor>();
        var stray = new Dictionary<string, Tensor> { ["not.in.the.adapter"] = zeros(2) };
        Assert.Throws<ArgumentException>(() => Scaffold.ClientControlUpdate(x, x, stray, empty, 4, 0.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => Scaffold.ClientControlUpdate(x, x, empty, empty, 0, 0.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => Scaffold.ClientControlUpdate(x, x, empty, empty, 4, 0));
        var wrongShape = new Dictionary<string, Tensor> { [FederationTestData.KeyA] = zeros(2, 1) };
        Assert.Throws<ArgumentException>(() => Scaffold.Correction(x, wrongShape));
    }
}
