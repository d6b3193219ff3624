using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>One client's result of a round, as the server receives it.</summary>
/// <param name="ClientId">Stable identity of the client; strategies sum in ordinal order of it, so the aggregate does not
/// depend on the order in which updates arrive.</param>
/// <param name="Weights">The client's full adapter after local training (y_i), PEFT-keyed
/// ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" ...); not a difference to the global.</param>
/// <param name="ExampleCount">n_i, the size of the client's whole local shard, not of this round's sample: OpenFedLLM
/// weights by the shard size (sample_num_list), and so does FedLlm.</param>
/// <param name="Metrics">Free-form client metrics (loss, steps, seconds) that strategies pass by and never read.</param>
/// <remarks>The sender owns the tensors; strategies never modify or dispose them.</remarks>
public sealed record ClientUpdate(
    string ClientId,
    IReadOnlyDictionary<string, Tensor> Weights,
    long ExampleCount,
    IReadOnlyDictionary<string, double>? Metrics = null)
{
    /// <summary>The tensor sets the client hooks sent back (<see cref="ClientInstructions.ReturnedTensorSets"/>: SCAFFOLD's
    /// "control_delta" Δc_i …), each name-keyed like <see cref="Weights"/>.</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> TensorSets { get; init; } =
        new Dictionary<string, IReadOnlyDictionary<string, Tensor>>();

    /// <summary>The tensor set <paramref name="name"/>, or null when the update has none.</summary>
    public IReadOnlyDictionary<string, Tensor>? TensorSet(string name) => TensorSets.GetValueOrDefault(name);

    /// <summary>Total bytes of the weights and every tensor set.</summary>
    public long Bytes => AdapterTensors.Bytes(Weights) + TensorSets.Values.Sum(AdapterTensors.Bytes);

    /// <summary>Frees the weights and every tensor set (for the owner, once the update has been aggregated).</summary>
    public void DisposeTensors()
    {
        AdapterTensors.Dispose(Weights);
        foreach (var set in TensorSets.Values) AdapterTensors.Dispose(set);
    }
}
