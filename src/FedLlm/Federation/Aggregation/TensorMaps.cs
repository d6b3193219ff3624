using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Aggregation;

/// <summary>
/// Pure helpers on name-keyed tensors (adapters, pseudo-gradients, control variates): layout checks, differences,
/// copies, and the precision rule every aggregation follows.
/// </summary>
/// <remarks>
/// Precision: arithmetic runs in float32 for float32 (and float16/bfloat16) inputs and in float64 for float64 inputs;
/// results come back in the inputs' dtype. LoRA adapters are float32, and float32 accumulation over a handful of
/// clients costs ~1e-7 relative, far below what a round of training moves; float64 would double the memory of every
/// temporary and of the server state for no visible gain.
/// </remarks>
public static class TensorMaps
{
    /// <summary>The dtype arithmetic runs in for tensors of <paramref name="dtype"/>: float64 stays, other floating types
    /// widen to float32.</summary>
    /// <exception cref="ArgumentException"><paramref name="dtype"/> is not a floating type.</exception>
    public static ScalarType WorkingType(ScalarType dtype) => dtype switch
    {
        ScalarType.Float64 => ScalarType.Float64,
        ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16 => ScalarType.Float32,
        _ => throw new ArgumentException($"adapter tensors must be floating point, got {dtype}", nameof(dtype)),
    };

    /// <summary>The first way <paramref name="actual"/> differs from <paramref name="expected"/> in keys, shapes or
    /// dtypes, or null if it has exactly the same layout. Values are not compared.</summary>
    public static (string Key, string Problem)? FindMismatch(
        IReadOnlyDictionary<string, Tensor> expected, IReadOnlyDictionary<string, Tensor> actual)
    {
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(actual);
        foreach (var (key, want) in expected)
        {
            if (!actual.TryGetValue(key, out var got)) return (key, "is missing");
            if (!want.shape.SequenceEqual(got.shape))
                return (key, $"has shape [{string.Join(", ", got.shape)}], expected [{string.Join(", ", want.shape)}]");
            if (want.dtype != got.dtype) return (key, $"has dtype {got.dtype}, expected {want.dtype}");
        }
        foreach (var key in actual.Keys)
            if (!expected.ContainsKey(key)) return (key, "is not in the global adapter");
        return null;
    }

    /// <summary>Throws unless <paramref name="actual"/>, client <paramref name="clientId"/>'s <paramref name="what"/>,
    /// has exactly the keys, shapes and dtypes of <paramref name="expected"/>.</summary>
    /// <exception cref="AggregationException">A mismatch; the message names the client and the key.</exception>
    public static void CheckLayout(
        IReadOnlyDictionary<string, Tensor> expected, IReadOnlyDictionary<string, Tensor> actual, string clientId, string what = "adapter")
    {
        if (FindMismatch(expected, actual) is { } mismatch)
            throw new AggregationException(
                $"client '{clientId}' {what}: tensor '{mismatch.Key}' {mismatch.Problem}", clientId, mismatch.Key);
    }

    /// <summary>a − b per key, in a's dtype. Used for client deltas y_i − x.</summary>
    /// <exception cref="ArgumentException">The two maps differ in keys, shapes or dtypes.</exception>
    public static Dictionary<string, Tensor> Difference(IReadOnlyDictionary<string, Tensor> a, IReadOnlyDictionary<string, Tensor> b)
    {
        if (FindMismatch(a, b) is { } mismatch)
            throw new ArgumentException($"cannot subtract: tensor '{mismatch.Key}' {mismatch.Problem}", nameof(b));
        using var noGrad = torch.no_grad();
        var result = new Dictionary<string, Tensor>(a.Count);
        foreach (var (key, left) in a)
        {
            using var scope = torch.NewDisposeScope();
            var working = WorkingType(left.dtype);
            var difference = (left.to(working) - b[key].to(working)).to(left.dtype);
            result[key] = difference.MoveToOuterDisposeScope();
        }
        return result;
    }

    /// <summary>A copy of every tensor (detached from autograd), in the caller's dispose scope if any.</summary>
    public static Dictionary<string, Tensor> Clone(IReadOnlyDictionary<string, Tensor> map)
    {
        ArgumentNullException.ThrowIfNull(map);
        using var noGrad = torch.no_grad();
        return map.ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
    }
}
