using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Strategies;
using TorchSharp;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation;

/// <summary>Properties every one of the seven strategies must have, in both modes, over the shared three-round script.</summary>
public class StrategyPropertyTests
{
    public static TheoryData<string, bool> AllStrategiesBothModes()
    {
        var data = new TheoryData<string, bool>();
        foreach (var name in StrategyFactory.Names)
        {
            data.Add(name, false);
            data.Add(name, true);
        }
        return data;
    }

    static readonly string[] StatefulNames = { "scaffold", "fedavgm", "fedadagrad", "fedyogi", "fedadam" };

    public static TheoryData<string> Stateful() => new(StatefulNames);

    /// <summary>Large enough steps that every strategy moves x visibly; N = 4 for SCAFFOLD.</summary>
    static IFederatedStrategy Create(string name, bool openFedLlm) => StrategyFactory.Create(name, new StrategyOptions
    {
        TotalClients = 4,
        Tau = 0.09, // not 0.1: see FedOptReference.Options
        ServerLearningRate = name == "fedavgm" && openFedLlm ? null : 0.5,
        OpenFedLlmCompatible = openFedLlm,
    });

    /// <summary>The script's round with a control delta on every update (SCAFFOLD needs it, the others ignore it).</summary>
    static List<ClientUpdate> Updates(int round) =>
        Rounds[round].Select(c => Update(c, Adapter(c.Weights.Select(w => 0.1 * w - 0.05).ToArray()))).ToList();

    static List<IReadOnlyDictionary<string, Tensor>> RunRounds(
        IFederatedStrategy strategy, IReadOnlyDictionary<string, Tensor> global, int from, int to, Func<int, List<ClientUpdate>>? updates = null)
    {
        var globals = new List<IReadOnlyDictionary<string, Tensor>>();
        for (int r = from; r < to; r++)
        {
            global = strategy.Aggregate(r, global, (updates ?? Updates)(r));
            globals.Add(global);
        }
        return globals;
    }

    [Theory]
    [MemberData(nameof(AllStrategiesBothModes))]
    public void Name_is_the_factory_name(string name, bool openFedLlm) =>
        Assert.Equal(name, Create(name, openFedLlm).Name);

    [Theory]
    [MemberData(nameof(AllStrategiesBothModes))]
    public void Aggregate_leaves_its_inputs_unchanged_and_returns_new_tensors(string name, bool openFedLlm)
    {
        // Prepare: keep bit copies of everything handed in.
        var strategy = Create(name, openFedLlm);
        var global = Adapter(X0);
        var updates = Updates(0);
        var globalCopy = TensorMaps.Clone(global);
        var weightCopies = updates.Select(u => TensorMaps.Clone(u.Weights)).ToList();
        var deltaCopies = updates.Select(u => TensorMaps.Clone(u.TensorSet("control_delta")!)).ToList();

        // Execute: two rounds from the same inputs, so stateful strategies also read their state.
        var first = strategy.Aggregate(0, global, updates);
        var second = strategy.Aggregate(1, global, updates);

        // Assert
        AssertBitEqual(globalCopy, global, "global");
        for (int i = 0; i < updates.Count; i++)
        {
            AssertBitEqual(weightCopies[i], updates[i].Weights, $"weights of {updates[i].ClientId}");
            AssertBitEqual(deltaCopies[i], updates[i].TensorSet("control_delta")!, $"control delta of {updates[i].ClientId}");
        }
        Assert.True(MaxAbsDifference(Flat(first), X0) > 1e-3, "the round moved nothing, so the test shows nothing");
        // The result is a new tensor: writing to it reaches neither the global nor a client's adapter.
        first[KeyA].add_(100);
        second[KeyB].add_(100);
        AssertBitEqual(globalCopy, global, "global after writing to the result");
        for (int i = 0; i < updates.Count; i++)
            AssertBitEqual(weightCopies[i], updates[i].Weights, $"weights of {updates[i].ClientId} after writing to the result");
    }

    [Theory]
    [MemberData(nameof(AllStrategiesBothModes))]
    public void A_single_client_round_returns_tensors_that_do_not_alias_the_clients(string name, bool openFedLlm)
    {
        var update = Updates(1)[0];
        var before = TensorMaps.Clone(update.Weights);

        var result = Create(name, openFedLlm).Aggregate(0, Adapter(X0), new[] { update });
        foreach (var tensor in result.Values) tensor.add_(7);

        AssertBitEqual(before, update.Weights, "client adapter after writing to the result");
    }

    [Theory]
    [MemberData(nameof(AllStrategiesBothModes))]
    public void Client_order_does_not_change_a_single_bit(string name, bool openFedLlm)
    {
        var inOrder = RunRounds(Create(name, openFedLlm), Adapter(X0), 0, 3);
        var reversed = RunRounds(Create(name, openFedLlm), Adapter(X0), 0, 3, r => Enumerable.Reverse(Updates(r)).ToList());

        for (int r = 0; r < 3; r++) AssertBitEqual(inOrder[r], reversed[r], $"round {r + 1}");
    }

    [Theory]
    [MemberData(nameof(AllStrategiesBothModes))]
    public void Saved_and_reloaded_state_continues_exactly_like_an_uninterrupted_run(string name, bool openFedLlm)
    {
        // Uninterrupted: three rounds on one strategy.
        var uninterrupted = Create(name, openFedLlm);
        var expected = RunRounds(uninterrupted, Adapter(X0), 0, 3);

        // Interrupted after round 1: save the state, drop the strategy, load into a fresh one, go on.
        var before = Create(name, openFedLlm);
        var afterRound1 = RunRounds(before, Adapter(X0), 0, 1)[0];
        var saved = before.State;
        (before as IDisposable)?.Dispose();
        var resumed = Create(name, openFedLlm);
        resumed.LoadState(saved);
        foreach (var tensor in saved.Values) tensor.Dispose(); // the strategy must have copied what it keeps
        var rest = RunRounds(resumed, afterRound1, 1, 3);

        AssertBitEqual(expected[1], rest[0], "round 2");
        AssertBitEqual(expected[2], rest[1], "round 3");
        AssertBitEqual(uninterrupted.State, resumed.State, "state after round 3");
        Assert.Equal(StatefulNames.Contains(name), uninterrupted.State.Count > 0);
    }

    [Theory]
    [MemberData(nameof(AllStrategiesBothModes))]
    public void Layout_mismatches_name_the_client_and_the_key_and_leave_the_state_unchanged(string name, bool openFedLlm)
    {
        var strategy = Create(name, openFedLlm);
        var global = RunRounds(strategy, Adapter(X0), 0, 1)[0];
        var stateBefore = strategy.State;
        var good = Updates(1);

        List<ClientUpdate> Spoil(Func<Dictionary<string, Tensor>, Dictionary<string, Tensor>> spoil) =>
            good.Select(u => u.ClientId == "c" ? u with { Weights = spoil(TensorMaps.Clone(u.Weights)) } : u).ToList();

        var cases = new (string Key, List<ClientUpdate> Updates, string Problem)[]
        {
            (KeyB, Spoil(w => { w.Remove(KeyB); return w; }), "missing"),
            ("base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
                Spoil(w => { w["base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"] = zeros(1, 2); return w; }), "not in the global"),
            (KeyA, Spoil(w => { w[KeyA] = zeros(2, 1); return w; }), "shape"),
            (KeyB, Spoil(w => { w[KeyB] = w[KeyB].to(ScalarType.Float64); return w; }), "dtype"),
        };
        foreach (var (key, updates, problem) in cases)
        {
            var error = Assert.Throws<AggregationException>(() => strategy.Aggregate(1, global, updates));
            Assert.Equal("c", error.ClientId);
            Assert.Equal(key, error.Key);
            Assert.Contains("'c'", error.Message);
            Assert.Contains(key, error.Message);
            Assert.Contains(problem, error.Message);
        }

        AssertBitEqual(stateBefore, strategy.State, "state after the failed rounds");
        var uninterrupted = RunRounds(Create(name, openFedLlm), Adapter(X0), 0, 2)[1];
        AssertBitEqual(uninterrupted, strategy.Aggregate(1, global, good), "round 2 after the failures");
    }

    [Theory]
    [MemberData(nameof(AllStrategiesBothModes))]
    public void Duplicate_client_ids_and_empty_rounds_are_rejected(string name, bool openFedLlm)
    {
        var strategy = Create(name, openFedLlm);
        var twice = Updates(0).Take(1).Concat(Updates(0).Take(1)).ToList();
        var error = Assert.Throws<AggregationException>(() => strategy.Aggregate(0, Adapter(X0), twice));
        Assert.Equal("a", error.ClientId);
        Assert.Throws<ArgumentException>(() => strategy.Aggregate(0, Adapter(X0), new List<ClientUpdate>()));
    }

    [Theory]
    [MemberData(nameof(AllStrategiesBothModes))]
    public void Float64_adapters_stay_float64_and_agree_with_float32(string name, bool openFedLlm)
    {
        var single = RunRounds(Create(name, openFedLlm), Adapter(X0), 0, 3);
        var wide = RunRounds(Create(name, openFedLlm), Adapter(X0[..2], X0[2..], ScalarType.Float64), 0, 3,
            r => Updates(r).Select(u => u with
            {
                Weights = u.Weights.ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float64)),
                TensorSets = new Dictionary<string, IReadOnlyDictionary<string, Tensor>>
                {
                    ["control_delta"] = u.TensorSet("control_delta")!.ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float64)),
                },
            }).ToList());

        Assert.All(wide[2].Values, t => Assert.Equal(ScalarType.Float64, t.dtype));
        Assert.All(single[2].Values, t => Assert.Equal(ScalarType.Float32, t.dtype));
        AssertClose(Flat(wide[2]), Flat(single[2]), 1e-5, "float32 vs float64 after three rounds");
    }

    [Theory]
    [MemberData(nameof(AllStrategiesBothModes))]
    public void Live_parameters_as_inputs_grow_no_autograd_graph(string name, bool openFedLlm)
    {
        var global = Adapter(X0).ToDictionary(kv => kv.Key, kv => (Tensor)new TorchSharp.Modules.Parameter(kv.Value, requires_grad: true));
        var updates = Updates(0).Select(u => u with
        {
            Weights = u.Weights.ToDictionary(kv => kv.Key, kv => (Tensor)new TorchSharp.Modules.Parameter(kv.Value, requires_grad: true)),
        }).ToList();

        var result = Create(name, openFedLlm).Aggregate(0, global, updates);

        Assert.All(result.Values, t => Assert.False(t.requires_grad));
    }

    [Theory]
    [MemberData(nameof(Stateful))]
    public void State_that_does_not_fit_the_adapter_is_reported_at_the_next_round(string name)
    {
        var strategy = Create(name, openFedLlm: false);
        RunRounds(strategy, Adapter(X0), 0, 1);
        var state = strategy.State.ToDictionary(kv => kv.Key, kv => kv.Key.EndsWith(KeyA, StringComparison.Ordinal) ? zeros(2, 1) : kv.Value);

        var fresh = Create(name, openFedLlm: false);
        fresh.LoadState(state);

        var error = Assert.Throws<AggregationException>(() => fresh.Aggregate(1, Adapter(X0), Updates(1)));
        Assert.Equal("server state", error.ClientId);
        Assert.Equal(KeyA, error.Key);
        Assert.Throws<ArgumentException>(() => fresh.LoadState(new Dictionary<string, Tensor> { ["q/" + KeyA] = zeros(1, 2) }));
    }

    [Theory]
    [InlineData("fedavg")]
    [InlineData("fedprox")]
    public void Stateless_strategies_refuse_a_non_empty_state(string name)
    {
        var strategy = Create(name, openFedLlm: false);
        Assert.Empty(strategy.State);
        strategy.LoadState(new Dictionary<string, Tensor>());
        Assert.Throws<ArgumentException>(() => strategy.LoadState(new Dictionary<string, Tensor> { ["m/" + KeyA] = zeros(1, 2) }));
    }
}
