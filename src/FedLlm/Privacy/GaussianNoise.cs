using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Privacy;

/// <summary>
/// Adds independent N(0, std²) noise to every coordinate of a name-keyed tensor map. Pure apart from the generator it
/// draws from. The server-side decorators use it on the mean update; local DP (a client noising its own clipped update
/// with std = σ·C before sending, as Flower's LocalDpMod) will use it once clients have hooks.
/// </summary>
public static class GaussianNoise
{
    /// <summary>t + N(0, <paramref name="standardDeviation"/>²) per coordinate, in t's dtype. Keys are drawn in ordinal
    /// order, so the same generator state gives the same noise whatever the dictionary's order.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The standard deviation is negative or not finite.</exception>
    public static Dictionary<string, Tensor> Add(
        IReadOnlyDictionary<string, Tensor> tensors, double standardDeviation, torch.Generator generator)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(generator);
        if (!(standardDeviation >= 0) || double.IsPositiveInfinity(standardDeviation))
            throw new ArgumentOutOfRangeException(nameof(standardDeviation), standardDeviation, "the noise standard deviation must be finite and ≥ 0");

        using var noGrad = torch.no_grad();
        // Named Scalars, not implicit ones a finalizer could free mid-call (Runtime.Scalars).
        using var deviation = standardDeviation.ToScalar();
        var result = new Dictionary<string, Tensor>(tensors.Count);
        foreach (var key in tensors.Keys.OrderBy(k => k, StringComparer.Ordinal))
        {
            using var scope = torch.NewDisposeScope();
            var value = tensors[key];
            var working = TensorMaps.WorkingType(value.dtype);
            var noise = torch.randn(value.shape, working, value.device, generator: generator);
            var scaledNoise = noise.mul(deviation);
            result[key] = value.to(working).add(scaledNoise, Runtime.Scalars.One).to(value.dtype).MoveToOuterDisposeScope();
        }
        // Keep the caller's key order, which the aggregation code follows.
        return tensors.Keys.ToDictionary(k => k, k => result[k]);
    }
}
