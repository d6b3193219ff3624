using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Network.Server;

/// <summary>
/// The content checks of an arriving update, after the transport's own (round, sender, size): names, shapes and dtypes
/// against the global adapter, finite values, the norm bound, a positive example count, and SCAFFOLD's control delta.
/// </summary>
public static class UpdateScreen
{
    /// <summary>Null when the update may be aggregated, else the reason it may not.</summary>
    public static string? Check(IReadOnlyDictionary<string, Tensor> global, ClientUpdate update, bool requireControlDelta, double maxUpdateNorm)
    {
        if (update.ExampleCount <= 0) return $"example count {update.ExampleCount} must be positive";
        try
        {
            UpdateChecks.Validate(global, new[] { update }, requireControlDelta);
        }
        catch (AggregationException e)
        {
            return e.Message;
        }
        using var scope = NewDisposeScope();
        foreach (var (name, tensor) in update.Weights.Concat(update.ControlDelta ?? new Dictionary<string, Tensor>()))
            if (!isfinite(tensor).all().item<bool>()) return $"tensor '{name}' holds NaN or Inf";
        double norm = AdapterTensors.DistanceNorm(update.Weights, global);
        if (norm > maxUpdateNorm) return $"update norm ‖y − x‖ = {norm:G6} exceeds the bound {maxUpdateNorm:G6}";
        return null;
    }
}
