using FedLlm.Runtime;
using FedLlm.Alignment;
using FedLlm.Checkpoints;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Tests.Modeling;
using static TorchSharp.torch;

namespace FedLlm.Tests.Alignment;

/// <summary>
/// Parity with tests/reference/dpo/make_dpo_golden.py: llama_gqa + the peft_lora adapter as policy, the adapter switched
/// off as reference, three token-id pairs, β 0.1. The reference runs every sequence alone; here they are batched with
/// right padding, so these tests also pin that padding never reaches a log-probability.
/// </summary>
public class DpoGoldenTests
{
    const double Tolerance = 1e-4;
    static string GoldenFile => Path.Combine(GoldenParityTests.GoldenDirectory("dpo"), "dpo_golden.safetensors");

    static LlamaForCausalLM PolicyModel()
    {
        var model = ModelLoader.Load(GoldenParityTests.GoldenDirectory("llama_gqa"));
        AdapterIO.Load(GoldenParityTests.GoldenDirectory("peft_lora"), model);
        model.eval();
        return model;
    }

    static List<PreferencePair> Pairs(SafeTensorsFile golden)
    {
        int count = int.Parse(golden.Metadata["pairs"]);
        int[] Ids(string name) { using var t = golden.Read(name); return t.data<long>().Select(v => (int)v).ToArray(); }
        return Enumerable.Range(0, count)
            .Select(i => new PreferencePair(Ids($"pair{i}.prompt"), Ids($"pair{i}.chosen"), Ids($"pair{i}.rejected")))
            .ToList();
    }

    static double[] Values(SafeTensorsFile golden, string name)
    {
        using var t = golden.Read(name, ScalarType.Float64);
        return t.data<double>().ToArray();
    }

    static void AssertClose(IReadOnlyList<double> expected, IReadOnlyList<double> actual, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= Tolerance, $"{what}[{i}]: expected {expected[i]}, got {actual[i]}");
    }

    /// <summary>Runs the whole batch (or micro-batches of it) and returns the metrics of each micro-batch.</summary>
    static List<DpoMetrics> ForwardBackward(LlamaForCausalLM model, List<PreferencePair> pairs, ReferenceLogProbCache reference,
        int[][] microBatches, int chunkTokens)
    {
        var collator = new PreferenceCollator(padTokenId: 0);
        var parts = new List<DpoMetrics>();
        foreach (var indices in microBatches)
        {
            var (rc, rr) = reference.Get(model, pairs, indices, collator, batchSize: 2, chunkTokens);
            // Each micro-batch's mean loss is weighted by its share of the pairs, so the sum is the mean over all pairs.
            var (metrics, _) = DpoObjective.MicroBatch(model, collator, indices.Select(i => pairs[i]).ToList(), rc, rr,
                new DpoOptions { Beta = 0.1 }, lossScale: (double)indices.Length / pairs.Count, chunkTokens);
            parts.Add(metrics);
        }
        return parts;
    }

    [Theory]
    [InlineData(1024, 1)] // one batch of all pairs, one head chunk
    [InlineData(3, 2)]    // head chunks that split sequences, and two micro-batches
    public void Loss_log_probs_and_adapter_gradients_match_the_reference(int chunkTokens, int microBatchCount)
    {
        using var golden = SafeTensorsFile.Open(GoldenFile);
        using var model = PolicyModel();
        var pairs = Pairs(golden);
        using var reference = new ReferenceLogProbCache();
        int[][] micro = microBatchCount == 1 ? [[0, 1, 2]] : [[0, 1], [2]];
        var parts = ForwardBackward(model, pairs, reference, micro, chunkTokens);
        var all = DpoMetrics.Aggregate(parts);

        var collator = new PreferenceCollator(0);
        var (rc, rr) = reference.Get(model, pairs, [0, 1, 2], collator, 2, chunkTokens);
        AssertClose(Values(golden, "reference_chosen_logps"), rc, "reference chosen");
        AssertClose(Values(golden, "reference_rejected_logps"), rr, "reference rejected");
        double beta = double.Parse(golden.Metadata["beta"], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(0.1, beta);
        Assert.True(Math.Abs(Values(golden, "loss")[0] - all.Loss) <= Tolerance, $"loss: expected {Values(golden, "loss")[0]}, got {all.Loss}");
        // logps/chosen is the mean policy log-probability; the golden per-pair values must average to it.
        Assert.True(Math.Abs(Values(golden, "policy_chosen_logps").Average() - all.LogpsChosen) <= Tolerance, "logps/chosen");
        Assert.True(Math.Abs(Values(golden, "policy_rejected_logps").Average() - all.LogpsRejected) <= Tolerance, "logps/rejected");

        var state = AdapterIO.State(model);
        int compared = 0;
        foreach (var name in golden.Tensors.Keys.Where(k => k.StartsWith("grad.", StringComparison.Ordinal)))
        {
            using var expected = golden.Read(name, ScalarType.Float32);
            var parameter = state[name["grad.".Length..]];
            Assert.NotNull(parameter.grad);
            double error = (parameter.grad! - expected).abs().max().ToScalarDouble();
            Assert.True(error <= Tolerance, $"{name}: max abs error {error}");
            compared++;
        }
        Assert.Equal(state.Count, compared); // every lora_A / lora_B tensor has a golden gradient
    }

    [Fact]
    public void Metrics_follow_the_golden_log_probs_as_TRL_computes_them()
    {
        using var golden = SafeTensorsFile.Open(GoldenFile);
        double[] pc = Values(golden, "policy_chosen_logps"), pr = Values(golden, "policy_rejected_logps");
        double[] rc = Values(golden, "reference_chosen_logps"), rr = Values(golden, "reference_rejected_logps");
        var m = DpoLoss.Metrics(pc, pr, rc, rr, beta: 0.1);
        Assert.Equal(Values(golden, "loss")[0], m.Loss, 10);
        Assert.Equal(Enumerable.Range(0, 3).Average(i => 0.1 * (pc[i] - rc[i])), m.RewardsChosen, 12);
        Assert.Equal(m.RewardsChosen - m.RewardsRejected, m.RewardsMargin, 12);
        // The tensor form (used for gradients) and the float64 form (used for logging) are one formula.
        using var losses = DpoLoss.PerPair(tensor(pc), tensor(pr), tensor(rc), tensor(rr), 0.1);
        Assert.Equal(m.Loss, losses.mean().ToScalarDouble(), 10);
    }

    [Fact]
    public void A_named_reference_adapter_is_swapped_in_for_the_reference_pass_and_restored()
    {
        using var golden = SafeTensorsFile.Open(GoldenFile);
        using var model = PolicyModel();
        var pairs = Pairs(golden);
        var original = AdapterIO.State(model).ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        // Reference = the policy's own adapter: every implicit reward is 0, so the loss is exactly log 2.
        using (var sameAdapter = new ReferenceLogProbCache(ReferencePolicy.FromAdapterState(AdapterIO.State(model))))
        {
            var m = DpoMetrics.Aggregate(ForwardBackward(model, pairs, sameAdapter, [[0, 1, 2]], 1024));
            Assert.Equal(Math.Log(2), m.Loss, 5);
            Assert.True(Math.Abs(m.RewardsChosen) < 1e-5 && Math.Abs(m.RewardsRejected) < 1e-5, $"rewards {m.RewardsChosen}, {m.RewardsRejected}");
        }
        // A different reference adapter (B zeroed = the base model's function) gives the golden, base-model reference values.
        var zeroB = AdapterIO.State(model).ToDictionary(kv => kv.Key, kv => kv.Key.Contains("lora_B") ? zeros_like(kv.Value) : kv.Value.clone());
        using (var baseLike = new ReferenceLogProbCache(ReferencePolicy.FromAdapterState(zeroB)))
        {
            var (rc, _) = baseLike.Get(model, pairs, [0, 1, 2], new PreferenceCollator(0), 8, 1024);
            AssertClose(Values(golden, "reference_chosen_logps"), rc, "reference chosen via zero-B adapter");
        }
        foreach (var (key, value) in AdapterIO.State(model))
            Assert.True(value.allclose(original[key], rtol: 0, atol: 0), $"{key} was not restored after the reference pass");
        Assert.All(LoraInjector.Sites(model), s => Assert.True(s.Layer.Enabled));
        Assert.False(model.training); // the mode it had before
    }

    [Fact]
    public void Reference_values_are_computed_once_per_pair_and_recomputed_for_another_list()
    {
        using var golden = SafeTensorsFile.Open(GoldenFile);
        using var model = PolicyModel();
        var pairs = Pairs(golden);
        using var cache = new ReferenceLogProbCache();
        var collator = new PreferenceCollator(0);
        var first = cache.Get(model, pairs, [2, 0], collator, 8, 1024);
        var second = cache.Get(model, pairs, [0, 1, 2, 0], collator, 8, 1024);
        Assert.Equal(3, cache.PairsComputed);
        Assert.Equal(first.Chosen[0], second.Chosen[2]);
        Assert.Equal(first.Chosen[1], second.Chosen[3]);
        // Same index, different pair object: the cache must not hand back pair 0's values for pair 1's sequences.
        var swapped = new List<PreferencePair> { pairs[1], pairs[0], pairs[2] };
        var third = cache.Get(model, swapped, [0], collator, 8, 1024);
        Assert.Equal(4, cache.PairsComputed);
        Assert.Equal(second.Chosen[1], third.Chosen[0]);
    }

    [Fact]
    public void The_reference_pass_refuses_a_merged_adapter()
    {
        using var model = PolicyModel();
        LoraInjector.MergeAll(model);
        using var golden = SafeTensorsFile.Open(GoldenFile);
        using var cache = new ReferenceLogProbCache();
        Assert.Throws<InvalidOperationException>(() => cache.Get(model, Pairs(golden), [0], new PreferenceCollator(0), 8, 1024));
    }
}
