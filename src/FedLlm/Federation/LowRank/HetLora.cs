using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Federation.LowRank;

/// <summary>
/// HetLoRA: clients of different rank budgets train the first r_i rank components of the global adapter (zero-padded
/// to the global rank) and the server averages the padded factors, weighting each client by the Frobenius norm of its
/// weight change ‖B_i·A_i‖_F (sparsity-weighted aggregation); clients prune their own rank when its last component
/// fades (<see cref="RankBudgetClientHooks"/>).
/// </summary>
/// <remarks>Cho, Manoel, Joshi, Sahu, Ramage, "Heterogeneous LoRA for Federated Fine-tuning of On-Device Foundation
/// Models", EMNLP 2024 (arXiv:2401.06432): zero-padding, rank self-pruning, sparsity-weighted aggregation. Non-LoRA
/// tensors, if any, are averaged with the same weights. Stateless.</remarks>
public sealed class HetLora(StrategyOptions options, Func<int, string> clientId) : IFederatedStrategy
{
    readonly IReadOnlyList<int> ranks = options.ClientRanks;

    /// <inheritdoc/>
    public string Name => "hetlora";

    /// <inheritdoc/>
    public ClientInstructions ConfigureTrain(int round, double learningRate) => new(round, learningRate)
    {
        Hooks = [RankBudget.HookName],
        Config = RankBudget.Config(ranks, clientId, RankTruncation.Slice),
    };

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        updates = updates.OrderBy(u => u.ClientId, StringComparer.Ordinal).ToList();
        var adapters = updates.Select(u => u.Weights).ToList();
        var norms = adapters.Select(ProductNorm).ToList();
        double total = norms.Sum();
        var weights = total > 0 ? norms.Select(n => n / total).ToList() : LoraProducts.ExampleWeights(updates.Select(u => u.ExampleCount).ToList()).ToList();
        var mean = Averaging.WeightedMean(ClientTensors.WeightsOf(updates), weights);
        return global.Keys.ToDictionary(key => key, key => mean[key]);
    }

    static double ProductNorm(IReadOnlyDictionary<string, Tensor> adapter)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        double squared = 0;
        foreach (var module in LoraProducts.Modules(adapter))
            squared += adapter[module.KeyB].to(ScalarType.Float64).matmul(adapter[module.KeyA].to(ScalarType.Float64)).square().sum().item<double>();
        return Math.Sqrt(squared);
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> State => new Dictionary<string, Tensor>();

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Count > 0) throw new ArgumentException($"hetlora keeps no server state, but the checkpoint holds {state.Count} tensors", nameof(state));
    }
}

/// <summary>
/// FlexLoRA: the server averages the clients' weight changes, ΔW = Σ p_i·B_i·A_i (p_i = n_i/Σn), and redistributes it
/// by SVD as rank-r factors of the global layout (B = U_r·S_r, A = V_rᵀ); each client cuts the global to its budget r_i
/// by the SVD of B·A (<see cref="RankBudgetClientHooks"/>). With every client at the global rank (no
/// <c>lora.rank_per_client</c>) this is exact aggregation of the product: average B·A, then the best rank-r factors.
/// </summary>
/// <remarks>Bai, Chen, Qian, Yao, Li, "Federated Fine-tuning of Large Language Models under Heterogeneous Tasks and
/// Client Resources" (FlexLoRA), NeurIPS 2024 (arXiv:2402.11505). Non-LoRA tensors, if any, are averaged. Stateless.</remarks>
public sealed class FlexLora(StrategyOptions options, Func<int, string> clientId) : IFederatedStrategy
{
    readonly IReadOnlyList<int> ranks = options.ClientRanks;

    /// <inheritdoc/>
    public string Name => "flexlora";

    /// <inheritdoc/>
    public ClientInstructions ConfigureTrain(int round, double learningRate) => ranks.Count == 0
        ? new(round, learningRate)
        : new(round, learningRate) { Hooks = [RankBudget.HookName], Config = RankBudget.Config(ranks, clientId, RankTruncation.Svd) };

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        // Summed in client-id order, as every aggregation here, so arrival order does not change the bits.
        updates = updates.OrderBy(u => u.ClientId, StringComparer.Ordinal).ToList();
        var adapters = updates.Select(u => u.Weights).ToList();
        var weights = LoraProducts.ExampleWeights(updates.Select(u => u.ExampleCount).ToList());
        var mean = Averaging.WeightedMean(ClientTensors.WeightsOf(updates), weights);
        var next = global.Keys.ToDictionary(key => key, key => mean[key]);
        foreach (var module in LoraProducts.Modules(global))
        {
            using var scope = NewDisposeScope();
            var product = LoraProducts.WeightedProduct(module, adapters, weights);
            var (b, a) = LoraProducts.Factor(product, (int)global[module.KeyA].shape[0], (int)global[module.KeyA].shape[0], global[module.KeyA].dtype);
            next[module.KeyA].Dispose();
            next[module.KeyB].Dispose();
            next[module.KeyA] = a.MoveToOuterDisposeScope();
            next[module.KeyB] = b.MoveToOuterDisposeScope();
        }
        return next;
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> State => new Dictionary<string, Tensor>();

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Count > 0) throw new ArgumentException($"flexlora keeps no server state, but the checkpoint holds {state.Count} tensors", nameof(state));
    }
}
