using FedLlm.Federation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation;

/// <summary>
/// Tiny PEFT-keyed adapters for strategy tests: key A is a 1×2 lora_A, key B a 3×1 lora_B, so both a row and a column
/// shape go through every strategy. Values are given as plain doubles so the tests can compute their expectations with
/// double arithmetic, independent of the tensor code under test.
/// </summary>
internal static class FederationTestData
{
    public const string KeyA = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    public const string KeyB = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";

    static readonly long[] ShapeA = { 1, 2 };
    static readonly long[] ShapeB = { 3, 1 };

    /// <summary>An adapter with A (2 values) and B (3 values), float32 unless said otherwise.</summary>
    public static Dictionary<string, Tensor> Adapter(double[] a, double[] b, ScalarType dtype = ScalarType.Float32) => new()
    {
        [KeyA] = tensor(a, ShapeA).to(dtype),
        [KeyB] = tensor(b, ShapeB).to(dtype),
    };

    /// <summary>An adapter as a flat double[5]: A then B.</summary>
    public static Dictionary<string, Tensor> Adapter(double[] flat) => Adapter(flat[..2], flat[2..]);

    public static double[] Flat(IReadOnlyDictionary<string, Tensor> adapter) =>
        Values(adapter[KeyA]).Concat(Values(adapter[KeyB])).ToArray();

    public static double[] Values(Tensor t)
    {
        using var wide = t.detach().to(ScalarType.Float64).contiguous();
        return wide.data<double>().ToArray();
    }

    /// <summary>One client's contribution in a scripted round: id, shard size n_i, and y_i as flat doubles.</summary>
    public sealed record ScriptedClient(string Id, long Count, double[] Weights);

    public static ClientUpdate Update(ScriptedClient client, IReadOnlyDictionary<string, Tensor>? controlDelta = null) =>
        WithTensorSet(new(client.Id, Adapter(client.Weights), client.Count), controlDelta);

    /// <summary><paramref name="update"/> carrying <paramref name="controlDelta"/> as SCAFFOLD's "control_delta" set (none when null).</summary>
    public static ClientUpdate WithTensorSet(ClientUpdate update, IReadOnlyDictionary<string, Tensor>? controlDelta) =>
        controlDelta is null ? update : update with { TensorSets = new Dictionary<string, IReadOnlyDictionary<string, Tensor>> { ["control_delta"] = controlDelta } };

    /// <summary>
    /// The shared three-round script. Shard sizes 10, 30, 60 make p = 0.1/0.3/0.6 in round 1, 1/3 and 2/3 in round 2,
    /// 1/7 and 6/7 in round 3, all far from the unweighted 1/3 and 1/2, so a lost weighting changes every number.
    /// </summary>
    public static readonly double[] X0 = { 1.0, -2.0, 0.5, 0.0, 3.0 };

    public static readonly ScriptedClient[][] Rounds =
    {
        new ScriptedClient[]
        {
            new("a", 10, new[] { 1.2, -1.0, 0.5, 1.0, 2.0 }),
            new("b", 30, new[] { 0.8, -2.6, 0.0, -1.0, 4.0 }),
            new("c", 60, new[] { 2.0, 0.0, 1.0, 0.5, 3.0 }),
        },
        new ScriptedClient[]
        {
            new("b", 30, new[] { 0.0, 3.0, 3.0, 0.0, -3.0 }),
            new("c", 60, new[] { 3.0, 0.0, 0.0, 3.0, 3.0 }),
        },
        new ScriptedClient[]
        {
            new("c", 60, new[] { 1.5, -0.5, 0.0, 2.0, 2.5 }),
            new("a", 10, new[] { 0.5, -1.5, 1.0, 1.0, 1.0 }),
        },
    };

    /// <summary>Runs the script through <paramref name="strategy"/>; returns the global after each round as doubles.</summary>
    public static List<double[]> Run(IFederatedStrategy strategy, int rounds = 3)
    {
        var results = new List<double[]>();
        IReadOnlyDictionary<string, Tensor> global = Adapter(X0);
        for (int r = 0; r < rounds; r++)
        {
            global = strategy.Aggregate(r, global, Rounds[r].Select(c => Update(c)).ToList());
            results.Add(Flat(global));
        }
        return results;
    }

    public static void AssertClose(double[] expected, double[] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance,
                $"{what}[{i}]: expected {expected[i]:R}, got {actual[i]:R} (tolerance {tolerance})");
    }

    public static double MaxAbsDifference(double[] a, double[] b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max();

    /// <summary>Same keys, dtypes, shapes and bit-identical values.</summary>
    public static void AssertBitEqual(IReadOnlyDictionary<string, Tensor> expected, IReadOnlyDictionary<string, Tensor> actual, string what)
    {
        Assert.Equal(expected.Keys.OrderBy(k => k, StringComparer.Ordinal), actual.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (key, e) in expected)
        {
            var a = actual[key];
            Assert.Equal(e.dtype, a.dtype);
            Assert.Equal(e.shape, a.shape);
            Assert.True(Values(e).SequenceEqual(Values(a)), $"{what}: tensor '{key}' differs: expected [{string.Join(", ", Values(e))}], got [{string.Join(", ", Values(a))}]");
        }
    }

    /// <summary>Weighted mean of the script's round <paramref name="r"/> as doubles (the FedAvg rule, written out).</summary>
    public static double[] ExampleWeightedMean(ScriptedClient[] clients)
    {
        double total = clients.Sum(c => (double)c.Count);
        return Enumerable.Range(0, 5).Select(k => clients.Sum(c => c.Count / total * c.Weights[k])).ToArray();
    }
}
