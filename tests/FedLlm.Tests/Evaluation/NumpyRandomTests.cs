using System.Text.Json.Nodes;
using FedLlm.Evaluation.Data;

namespace FedLlm.Tests.Evaluation;

/// <summary>The C# port against numpy 1.24's own output (tests/reference/eval/numpy_permutation.py).</summary>
public class NumpyRandomTests
{
    static readonly JsonNode Golden = JsonNode.Parse(File.ReadAllText(EvalFixtures.Path("numpy_permutation.json")))!;

    [Fact]
    public void Seed_sequence_and_pcg64_match_numpy()
    {
        Assert.Equal(Golden["seed_sequence_42"]!.AsArray().Select(v => (uint)v!.GetValue<long>()), NumpyRandom.SeedSequenceState(42, 8));
        var rng = new NumpyRandom(42);
        Assert.Equal(Golden["pcg64_42_first_uint64"]!.AsArray().Select(v => v!.GetValue<ulong>()), [rng.NextUInt64(), rng.NextUInt64(), rng.NextUInt64()]);
    }

    [Fact]
    public void Permutations_match_numpy_default_rng()
    {
        foreach (var c in Golden["cases"]!.AsArray())
        {
            ulong seed = c!["seed"]!.GetValue<ulong>();
            int n = c["n"]!.GetValue<int>();
            Assert.Equal(c["permutation"]!.AsArray().Select(v => v!.GetValue<int>()), new NumpyRandom(seed).Permutation(n));
        }
    }

    [Fact]
    public void The_fpb_test_split_is_the_first_quarter_of_the_permutation()
    {
        var test = HfTrainTestSplit.TestIndices(4846, 0.25, 42);
        Assert.Equal(Golden["fpb_test_count"]!.GetValue<int>(), test.Count);
        Assert.Equal(Golden["fpb_test_first20"]!.AsArray().Select(v => v!.GetValue<int>()), test.Take(20));
    }
}
