using FedLlm.Data;
using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Attacks;
using FedLlm.Federation.Robust;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using FedLlm.Evaluation;
using FedLlm.Runs;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation.Attacks;

/// <summary>Simulated attackers: what they send, how their data is poisoned, the backdoor's success rate, and a robust
/// rule against a sign-flipping minority.</summary>
public class AttackTests
{
    static readonly AlgorithmRegistry Registry =
        ModelPoisoningHooks.All.Aggregate(FederatedRun.DefaultAlgorithms, (r, h) => r.With(h));

    static FederationOptions Options(int clients) => new()
    {
        Rounds = 1, TotalClients = clients, ClientsPerRound = clients, LocalSteps = 3, BatchSize = 2, LearningRate = 5e-2, MinLearningRate = 1e-3,
        Seed = 9, EvaluateEvery = 0,
    };

    static Tensor Flat(IReadOnlyDictionary<string, Tensor> map) =>
        torch.cat(map.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Value.flatten()).ToList());

    /// <summary>Client c holds 8 + c draws from the same four sequences.</summary>
    static List<IReadOnlyList<SftExample>> AlignedShards(int clients)
    {
        var rng = new Random(5);
        var sequences = Enumerable.Range(0, 4).Select(_ => Enumerable.Range(0, 8).Select(_ => rng.Next(4, 97)).ToArray()).ToList();
        return Enumerable.Range(0, clients).Select(c => (IReadOnlyList<SftExample>)Enumerable.Range(0, 8 + c).Select(_ =>
        {
            var ids = sequences[rng.Next(sequences.Count)];
            return new SftExample(ids, ids.Select((id, i) => i < 2 ? -100 : id).ToArray(), 2, false, true);
        }).ToList()).ToList();
    }

    [Theory]
    [InlineData(AttackKind.SignFlip, -1.0)]
    [InlineData(AttackKind.Scale, 10.0)]
    public async Task Model_poisoning_attackers_send_a_transformed_update_and_honest_clients_are_untouched(AttackKind kind, double factor)
    {
        // Prepare: clients 0 and 1 train honestly once; then again with client 1 attacking (same seeds, same y_i).
        var options = Options(2);
        using var model = FederationCoreTests.AdaptedModel();
        var global = AdapterTensors.Snapshot(model);
        using var inner = new InProcessClients(model, options, FederationCoreTests.Shards(2), padTokenId: 0, Registry);
        var instructions = new FedAvg().ConfigureTrain(0, options.LearningRate);
        var honest = await inner.TrainRoundAsync(0, [0, 1], global, instructions);

        // Execute
        var attacking = new AttackingClients(inner, new AttackOptions { Kind = kind }, new HashSet<int> { 1 }, options.Seed);
        var sent = (await attacking.TrainRoundAsync(0, [0, 1], global, instructions)).OrderBy(u => u.ClientId, StringComparer.Ordinal).ToList();

        // Assert: the attacker's Δ is factor × its honest Δ (sign flip: −Δ); the honest client's is bit-identical.
        using var honestDelta = Flat(TensorMaps.Difference(honest[1].Weights, global));
        using var attackDelta = Flat(TensorMaps.Difference(sent[1].Weights, global));
        Assert.True(honestDelta.abs().max().item<float>() > 1e-4, "the honest update is zero, so the test could not fail");
        Assert.True((honestDelta * factor).allclose(attackDelta, rtol: 1e-4, atol: 1e-6), $"{kind}: Δ' ≠ {factor}·Δ");
        Assert.True(Flat(sent[0].Weights).eq(Flat(honest[0].Weights)).all().item<bool>());
        Assert.Equal(1, sent[1].Metrics!["attacker"]);
        Assert.False(sent[0].Metrics!.ContainsKey("attacker"));
    }

    [Fact]
    public async Task The_gaussian_attack_sends_noise_of_the_configured_expected_norm()
    {
        var options = Options(1);
        using var model = FederationCoreTests.AdaptedModel();
        var global = AdapterTensors.Snapshot(model);
        using var inner = new InProcessClients(model, options, FederationCoreTests.Shards(1), padTokenId: 0, Registry);
        var instructions = new FedAvg().ConfigureTrain(0, options.LearningRate);
        var honest = await inner.TrainRoundAsync(0, [0], global, instructions);
        var attacking = new AttackingClients(inner, new AttackOptions { Kind = AttackKind.Gaussian, ScaleFactor = 10 }, new HashSet<int> { 0 }, options.Seed);
        var sent = await attacking.TrainRoundAsync(0, [0], global, instructions);
        double honestNorm = AdapterTensors.DistanceNorm(honest[0].Weights, global), sentNorm = AdapterTensors.DistanceNorm(sent[0].Weights, global);
        Assert.InRange(sentNorm, 10 * honestNorm * 0.9, 10 * honestNorm * 1.1);
        using var honestDelta = Flat(TensorMaps.Difference(honest[0].Weights, global));
        using var sentDelta = Flat(TensorMaps.Difference(sent[0].Weights, global));
        double cosine = (honestDelta * sentDelta).sum().item<float>() / (honestNorm * sentNorm);
        Assert.InRange(cosine, -0.3, 0.3); // a random direction, not the honest one
    }

    [Fact]
    public void Attackers_are_a_seeded_choice_of_the_rounded_fraction()
    {
        var first = Attackers.Choose(10, 0.4, 2023);
        Assert.Equal(4, first.Count);
        Assert.Equal(first, Attackers.Choose(10, 0.4, 2023));
        Assert.NotEqual(first, Attackers.Choose(10, 0.4, 2024));
        Assert.Equal(2, Attackers.Choose(10, 0.2, 1).Count);
        Assert.Empty(Attackers.Choose(10, 0, 1));
    }

    [Fact]
    public void Label_flipping_moves_every_label_to_the_next_so_every_example_is_wrong()
    {
        var examples = new[] { new InstructionExample("a", "negative"), new InstructionExample("b", "neutral"), new InstructionExample("c", "positive") };
        var flipped = DataPoisoning.FlipLabels(examples, ["positive", "negative", "neutral"]);
        Assert.Equal(["neutral", "positive", "negative"], flipped.Select(e => e.Response));
        Assert.Equal(["a", "b", "c"], flipped.Select(e => e.Instruction));
        var free = Enumerable.Range(0, 40).Select(i => $"answer {i}").ToList();
        Assert.Contains("label-flip", Assert.Throws<ArgumentException>(() => DataPoisoning.FlipLabels(examples, free)).Message);
    }

    [Fact]
    public void The_backdoor_triggers_a_seeded_share_of_the_examples_and_maps_them_to_the_target()
    {
        var examples = Enumerable.Range(0, 10).Select(i => new InstructionExample($"headline {i}", "neutral")).ToList();
        var poisoned = DataPoisoning.Backdoor(examples, "cf", "positive", 0.5, seed: 3);
        var triggered = poisoned.Where(e => e.Instruction.EndsWith(" cf", StringComparison.Ordinal)).ToList();
        Assert.Equal(5, triggered.Count);
        Assert.All(triggered, e => Assert.Equal("positive", e.Response));
        Assert.All(poisoned.Except(triggered), e => Assert.Equal("neutral", e.Response));
        Assert.Equal(poisoned, DataPoisoning.Backdoor(examples, "cf", "positive", 0.5, seed: 3));
    }

    [Fact]
    public void Attack_success_rate_counts_target_answers_among_examples_whose_true_answer_differs()
    {
        // Five held-out examples; the two whose truth is already "positive" do not count. Of the other three, the
        // triggered answers are "Positive." (a hit after normalisation), "negative" and "positive" → 2/3.
        string[] truth = ["positive", "negative", "neutral", "positive", "negative"];
        string[] triggered = ["negative", "Positive.", "negative", "positive", "positive\nmore"];
        Assert.Equal(2.0 / 3, BackdoorSuccess.Rate(triggered, truth, "positive", HeldOutEvaluation.NormalizeAnswer), 12);
        Assert.True(double.IsNaN(BackdoorSuccess.Rate(["x"], ["positive"], "positive", HeldOutEvaluation.NormalizeAnswer)));
        Assert.Throws<ArgumentException>(() => BackdoorSuccess.Rate(["x"], [], "positive", HeldOutEvaluation.NormalizeAnswer));
    }

    [Fact]
    public async Task A_robust_rule_keeps_a_sign_flipping_minority_from_moving_the_global_much()
    {
        // Prepare: 7 clients every round, drawing from the same few sequences (so honest updates agree, as robust rules
        // assume); the three with the largest shards (3 of 7 clients, 51 % of the examples) flip their sign.
        var options = Options(7);
        using var model = FederationCoreTests.AdaptedModel();
        var initial = AdapterTensors.Snapshot(model);
        using var honest = new InProcessClients(model, options, AlignedShards(7), padTokenId: 0, Registry);
        using var attacked = new AttackingClients(new InProcessClients(model, options, AlignedShards(7), padTokenId: 0, Registry),
            new AttackOptions { Kind = AttackKind.SignFlip }, new HashSet<int> { 4, 5, 6 }, options.Seed);

        async Task<Tensor> Step(IFederatedStrategy strategy, IClientExecutor clients)
        {
            using var server = new FederationServer(strategy, options, initial, clients);
            await server.RunRoundAsync();
            return Flat(TensorMaps.Difference(server.Global, initial));
        }

        // Execute: one round, clean and attacked, for FedAvg and for the coordinate median.
        var fedAvgClean = await Step(new FedAvg(), honest);
        var fedAvgAttacked = await Step(new FedAvg(), attacked);
        var medianAttacked = await Step(new RobustAggregation(new FedAvg(), new CoordinateMedian()), attacked);
        var krumAttacked = await Step(new RobustAggregation(new FedAvg(), new Krum(2)), attacked);

        // Assert: measured against the clean FedAvg step (where the honest clients take the global), the attack turns
        // FedAvg around, while the robust rules keep going the honest way.
        double Cosine(Tensor a) => (a * fedAvgClean).sum().item<float>() / (a.norm().item<float>() * fedAvgClean.norm().item<float>());
        Assert.True(Cosine(fedAvgAttacked) < 0, $"FedAvg still points the honest way (cos {Cosine(fedAvgAttacked):F2}); the attack is too weak to test anything");
        // 3 of 7 is the median's breakdown edge: it takes the lowest honest value of each coordinate, still on the honest side.
        Assert.True(Cosine(medianAttacked) > 0.3, $"median: cos {Cosine(medianAttacked):F2} with the clean step");
        Assert.True(Cosine(krumAttacked) > 0.5, $"krum: cos {Cosine(krumAttacked):F2} with the clean step");
    }
}
