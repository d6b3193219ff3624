using static TorchSharp.torch;

namespace FedLlm.Federation.Aggregation;

/// <summary>The checks every strategy runs on a round's updates before any arithmetic, so that a bad update fails the
/// round with a precise message and leaves the strategy's state untouched.</summary>
public static class UpdateChecks
{
    /// <summary>
    /// Checks that there is at least one update, that client ids are distinct, that example counts are ≥ 0, and that
    /// every adapter (and every tensor set named in <paramref name="requiredTensorSets"/>, such as SCAFFOLD's control
    /// delta) has exactly the global's keys, shapes and dtypes.
    /// </summary>
    /// <exception cref="ArgumentException">No updates, or the global is not floating point.</exception>
    /// <exception cref="AggregationException">Any other failure; names the client and, where one is at fault, the key.</exception>
    public static void Validate(
        IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates, IReadOnlyList<string>? requiredTensorSets = null)
    {
        ArgumentNullException.ThrowIfNull(global);
        ArgumentNullException.ThrowIfNull(updates);
        if (updates.Count == 0) throw new ArgumentException("a round needs at least one client update", nameof(updates));
        foreach (var (key, tensor) in global)
            if (!tensor.is_floating_point())
                throw new ArgumentException($"global tensor '{key}' has dtype {tensor.dtype}; adapters must be floating point", nameof(global));

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var update in updates)
        {
            ArgumentNullException.ThrowIfNull(update, nameof(updates));
            if (!seen.Add(update.ClientId))
                throw new AggregationException($"client '{update.ClientId}' sent more than one update this round", update.ClientId);
            if (update.ExampleCount < 0)
                throw new AggregationException(
                    $"client '{update.ClientId}' reported {update.ExampleCount} examples; counts must be ≥ 0", update.ClientId);
            TensorMaps.CheckLayout(global, update.Weights, update.ClientId);
            foreach (var name in requiredTensorSets ?? [])
            {
                var set = update.TensorSet(name)
                    ?? throw new AggregationException($"client '{update.ClientId}' sent no {name.Replace('_', ' ')} (tensor set '{name}'), which this strategy needs", update.ClientId);
                TensorMaps.CheckLayout(global, set, update.ClientId, name.Replace('_', ' '));
            }
        }
    }
}
