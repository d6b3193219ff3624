using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>One client's result of a round, as the server receives it.</summary>
/// <param name="ClientId">Stable identity of the client; strategies sum in ordinal order of it, so the aggregate does not
/// depend on the order in which updates arrive.</param>
/// <param name="Weights">The client's full adapter after local training (y_i), PEFT-keyed
/// ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" ...); not a difference to the global.</param>
/// <param name="ExampleCount">n_i, the size of the client's whole local shard, not of this round's sample: OpenFedLLM
/// weights by the shard size (sample_num_list), and so does FedLlm.</param>
/// <param name="ControlDelta">SCAFFOLD only: Δc_i = c_i⁺ − c_i from <see cref="Strategies.Scaffold.ClientControlUpdate"/>.</param>
/// <param name="Metrics">Free-form client metrics (loss, steps, seconds) that strategies pass by and never read.</param>
/// <remarks>Strategies never modify or dispose these tensors; the sender owns them.</remarks>
public sealed record ClientUpdate(
    string ClientId,
    IReadOnlyDictionary<string, Tensor> Weights,
    long ExampleCount,
    IReadOnlyDictionary<string, Tensor>? ControlDelta = null,
    IReadOnlyDictionary<string, double>? Metrics = null);
