using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>What a client must do this round besides plain local training.</summary>
/// <param name="Round">The round index, as the server loop numbers it.</param>
/// <param name="LearningRate">The client's local learning rate for this round (constant within the round).</param>
/// <param name="ProximalMu">FedProx's μ: add (μ/2)·‖w − w_global‖² (<see cref="Strategies.FedProx.ProximalTerm"/>) to
/// every micro-batch loss; 0 = off.</param>
/// <param name="ServerControl">SCAFFOLD's server control variate c, name-keyed like the adapter; null = not SCAFFOLD.
/// A key absent from it (all keys before the first aggregation, when the server has not yet seen the adapter's layout)
/// stands for zeros, which is how SCAFFOLD initialises c. The dictionary and its tensors belong to the caller.</param>
public sealed record ClientRoundPlan(
    int Round,
    double LearningRate,
    double ProximalMu = 0,
    IReadOnlyDictionary<string, Tensor>? ServerControl = null);
