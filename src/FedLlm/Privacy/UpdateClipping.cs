using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Privacy;

/// <summary>A client update after clipping: the tensors, the norm before clipping, and whether it was scaled down.</summary>
/// <param name="Tensors">Δ·min(1, C/‖Δ‖), keyed and typed like the input.</param>
/// <param name="Norm">‖Δ‖₂ before clipping, over all tensors together.</param>
/// <param name="Clipped">True when ‖Δ‖ &gt; C, i.e. the update was scaled down.</param>
public sealed record ClippedUpdate(Dictionary<string, Tensor> Tensors, double Norm, bool Clipped);

/// <summary>
/// L2 clipping of a whole update (all of an adapter's tensors as one vector), the sensitivity bound of DP-FedAvg.
/// Pure: inputs are never modified. Used by the server-side decorators now, and by client-side clipping once clients
/// have the hooks to run it (Flower's ClientSideFixedClipping mod).
/// </summary>
/// <remarks>McMahan, Ramage, Talwar, Zhang, "Learning Differentially Private Recurrent Language Models", ICLR 2018
/// (DP-FedAvg, "flat clipping": one bound S for the concatenation of all layers' updates).</remarks>
public static class UpdateClipping
{
    /// <summary>‖t‖₂ over every tensor of the map, accumulated in float64 in ordinal key order (so the same bits
    /// whatever the dictionary's order).</summary>
    public static double L2Norm(IReadOnlyDictionary<string, Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        using var noGrad = torch.no_grad();
        double sumOfSquares = 0;
        foreach (var key in tensors.Keys.OrderBy(k => k, StringComparer.Ordinal))
        {
            using var scope = torch.NewDisposeScope();
            sumOfSquares += tensors[key].to(ScalarType.Float64).square().sum().item<double>();
        }
        return Math.Sqrt(sumOfSquares);
    }

    /// <summary>Δ·min(1, C/‖Δ‖): unchanged when within the bound, else scaled onto the sphere of radius C.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="clippingNorm"/> is not positive and finite.</exception>
    /// <exception cref="ArgumentException">The update has a non-finite value (its norm would be NaN or ∞).</exception>
    public static ClippedUpdate ClipToNorm(IReadOnlyDictionary<string, Tensor> update, double clippingNorm)
    {
        if (!(clippingNorm > 0) || double.IsPositiveInfinity(clippingNorm))
            throw new ArgumentOutOfRangeException(nameof(clippingNorm), clippingNorm, "the clipping norm must be positive and finite");
        double norm = L2Norm(update);
        if (!double.IsFinite(norm)) throw new ArgumentException($"the update's norm is {norm}; updates must be finite", nameof(update));
        bool clipped = norm > clippingNorm;
        double scale = clipped ? clippingNorm / norm : 1.0;

        using var noGrad = torch.no_grad();
        using var factor = scale.ToScalar();   // named, not an implicit Scalar a finalizer could free mid-call (Runtime.Scalars)
        var result = new Dictionary<string, Tensor>(update.Count);
        foreach (var (key, value) in update)
        {
            using var scope = torch.NewDisposeScope();
            var working = TensorMaps.WorkingType(value.dtype);
            result[key] = value.to(working).mul(factor).to(value.dtype).MoveToOuterDisposeScope();
        }
        return new ClippedUpdate(result, norm, clipped);
    }
}
