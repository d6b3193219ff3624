using static TorchSharp.torch;

namespace FedLlm.Federation.Aggregation;

/// <summary>One client's name-keyed tensors (its adapter, or its SCAFFOLD control delta) with the client's id, which
/// the aggregation functions use to name the culprit of a mismatch and to fix the order of summation.</summary>
public readonly record struct ClientTensors(string ClientId, IReadOnlyDictionary<string, Tensor> Tensors)
{
    /// <summary>The adapters (y_i) of <paramref name="updates"/>, in the same order.</summary>
    public static IReadOnlyList<ClientTensors> WeightsOf(IReadOnlyList<ClientUpdate> updates) =>
        updates.Select(u => new ClientTensors(u.ClientId, u.Weights)).ToArray();

    /// <summary>The SCAFFOLD control deltas (Δc_i) of <paramref name="updates"/>, in the same order.</summary>
    /// <exception cref="AggregationException">An update has no control delta.</exception>
    public static IReadOnlyList<ClientTensors> ControlDeltasOf(IReadOnlyList<ClientUpdate> updates) =>
        updates.Select(u => new ClientTensors(u.ClientId, u.ControlDelta
            ?? throw new AggregationException($"client '{u.ClientId}' sent no control delta, which SCAFFOLD needs", u.ClientId)))
            .ToArray();
}
