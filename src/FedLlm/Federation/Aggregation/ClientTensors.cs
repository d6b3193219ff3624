using static TorchSharp.torch;

namespace FedLlm.Federation.Aggregation;

/// <summary>One client's name-keyed tensors (its adapter, or one of its tensor sets) with the client's id, which
/// the aggregation functions use to name the culprit of a mismatch and to fix the order of summation.</summary>
public readonly record struct ClientTensors(string ClientId, IReadOnlyDictionary<string, Tensor> Tensors)
{
    /// <summary>The adapters (y_i) of <paramref name="updates"/>, in the same order.</summary>
    public static IReadOnlyList<ClientTensors> WeightsOf(IReadOnlyList<ClientUpdate> updates) =>
        updates.Select(u => new ClientTensors(u.ClientId, u.Weights)).ToArray();

    /// <summary>The tensor set <paramref name="name"/> of each of <paramref name="updates"/> (SCAFFOLD's Δc_i), in the same order.</summary>
    /// <exception cref="AggregationException">An update lacks the set.</exception>
    public static IReadOnlyList<ClientTensors> TensorSetsOf(IReadOnlyList<ClientUpdate> updates, string name) =>
        updates.Select(u => new ClientTensors(u.ClientId, u.TensorSet(name)
            ?? throw new AggregationException($"client '{u.ClientId}' sent no {name.Replace('_', ' ')} (tensor set '{name}'), which this strategy needs", u.ClientId)))
            .ToArray();
}
