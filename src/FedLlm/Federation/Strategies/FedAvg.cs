using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Federation.Strategies;

/// <summary>Federated Averaging: the new global adapter is the example-weighted mean of the clients' adapters,
/// x ← Σ_{i∈S} p_i·y_i with p_i = n_i / Σ_{j∈S} n_j.</summary>
/// <remarks>
/// McMahan, Moore, Ramage, Hampson, Agüera y Arcas, "Communication-Efficient Learning of Deep Networks from
/// Decentralized Data", AISTATS 2017 (arXiv:1602.05629), Algorithm 1 (server learning rate 1). OpenFedLLM's default
/// branch of global_aggregate is the same rule, with n_i the client's whole shard size. Stateless.
/// </remarks>
public sealed class FedAvg : IFederatedStrategy
{
    /// <inheritdoc/>
    public string Name => "fedavg";

    /// <inheritdoc/>
    public ClientInstructions ConfigureTrain(int round, double learningRate) => new(round, learningRate);

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        return WeightedAverage(global, updates);
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> State => new Dictionary<string, Tensor>();

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state) => Stateless.Load(Name, state);

    /// <summary>Σ p_i·y_i in the global's key order, for updates already validated against the global. FedProx and
    /// SCAFFOLD move the global by the same rule.</summary>
    internal static Dictionary<string, Tensor> WeightedAverage(
        IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        var mean = Averaging.WeightedMean(ClientTensors.WeightsOf(updates), Averaging.ExampleCounts(updates));
        return global.Keys.ToDictionary(key => key, key => mean[key]);
    }
}

/// <summary>The state contract of strategies that have none.</summary>
internal static class Stateless
{
    /// <summary>Accepts only an empty state, so a checkpoint of another algorithm is not silently dropped.</summary>
    public static void Load(string name, IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Count > 0)
            throw new ArgumentException(
                $"{name} keeps no server state, but the checkpoint holds {state.Count} tensors (first '{state.Keys.First()}'); was it written by another algorithm?",
                nameof(state));
    }
}
