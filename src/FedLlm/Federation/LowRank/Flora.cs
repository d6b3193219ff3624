using System.Globalization;
using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Federation.LowRank;

/// <summary>
/// FLoRA: clients train fresh LoRA modules of their own ranks on top of everything aggregated so far; the server stacks
/// the modules (<see cref="FloraStacking.Stack"/>), so the round adds Σ p_i·B_i·A_i exactly (p_i = n_i/Σn), and the next
/// round starts from fresh modules again.
/// </summary>
/// <remarks>
/// <para>Wang, Shen, Wang, Chen, Yin, Zhang, Ding, "FLoRA: Federated Fine-Tuning Large Language Models with
/// Heterogeneous Low-Rank Adaptations", NeurIPS 2024 (arXiv:2409.05976; github.com/ATP-1010/FederatedLLM).</para>
/// <para>FLoRA merges the stacked product into every client's base weights. Here the run's global stays one PEFT
/// adapter of the layout's rank r, so evaluation, export, serving, resume and the wire see nothing new: the first
/// k = min(out, in, r − f) components of each module hold the accumulated ΔW as SVD factors (B = U·S, A = Vᵀ), the last
/// f hold the fresh module (the run's initial A, B = 0, so it adds nothing). The clients freeze the first part
/// (<see cref="FloraClientHooks"/>) and train r_i ≤ f of the fresh components. The server forms
/// ΔW' = B_g[:, :k]·A_g[:k] + B_stack·A_stack in float64 and factors it back into k components: exact whenever
/// rank ΔW' ≤ k, which r − f ≥ min(out, in) guarantees for every module; below that the best rank-k approximation is
/// kept and <see cref="TruncationMetric"/> reports what was dropped. f is the largest rank of
/// <c>lora.rank_per_client</c>, or ⌊r/2⌋ without a table. Non-LoRA tensors, if any, are averaged. The server keeps no
/// state: the accumulated update is the global.</para>
/// </remarks>
public sealed class Flora(StrategyOptions options, Func<int, string> clientId) : IFederatedStrategy
{
    /// <summary>The algorithm's name.</summary>
    public const string AlgorithmName = "flora";

    /// <summary>The aggregation metric: ‖ΔW' − kept‖_F / ‖ΔW'‖_F over the whole adapter (0 when the layout holds
    /// ΔW' exactly).</summary>
    public const string TruncationMetric = "flora_truncation_error";

    readonly IReadOnlyList<int> ranks = options.ClientRanks;
    double? lastTruncation;

    /// <inheritdoc/>
    public string Name => AlgorithmName;

    /// <inheritdoc/>
    public ClientInstructions ConfigureTrain(int round, double learningRate) =>
        new(round, learningRate) { Hooks = [FloraClientHooks.HookName], Config = Config() };

    /// <summary>The rank table and f (its largest rank) for the clients; empty without a table (f = ⌊r/2⌋ on both sides).</summary>
    Dictionary<string, string> Config()
    {
        var config = new Dictionary<string, string>(StringComparer.Ordinal);
        if (ranks.Count == 0) return config;
        config[RankBudget.RanksKey] = RankBudget.Config(ranks, clientId, RankTruncation.Slice)[RankBudget.RanksKey];
        config[FloraStacking.FreshRankKey] = ranks.Max().ToString(CultureInfo.InvariantCulture);
        return config;
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        // Summed in client-id order, as every aggregation here, so arrival order does not change the bits.
        updates = updates.OrderBy(u => u.ClientId, StringComparer.Ordinal).ToList();
        var modules = LoraProducts.Modules(global);
        if (modules.Count == 0) throw new ArgumentException("flora needs LoRA modules in the global adapter", nameof(global));
        int layoutRank = (int)global[modules[0].KeyA].shape[0];
        int fresh = FloraStacking.FreshRank(Config(), layoutRank, round);
        foreach (var module in modules) CheckFrozen(module, global, updates, fresh);

        var weights = LoraProducts.ExampleWeights(updates.Select(u => u.ExampleCount).ToList());
        var mean = Averaging.WeightedMean(ClientTensors.WeightsOf(updates), weights);
        var next = global.Keys.ToDictionary(key => key, key => mean[key]);
        double droppedSquared = 0, totalSquared = 0;
        foreach (var module in modules)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var globalA = global[module.KeyA];
            var globalB = global[module.KeyB];
            int k = FloraStacking.ResidualRank(globalB, globalA, fresh);
            var (stackB, stackA) = FloraStacking.Stack(
                updates.Select(u => u.Weights[module.KeyB][.., k..]).ToList(), updates.Select(u => u.Weights[module.KeyA][k..]).ToList(), weights);
            var accumulated = globalB[.., ..k].to(ScalarType.Float64).matmul(globalA[..k].to(ScalarType.Float64)) + stackB.matmul(stackA); // (out, in)
            var (b, a) = LoraProducts.Factor(accumulated, k, layoutRank, globalA.dtype);
            a[k..] = globalA[k..];                           // the fresh module restarts from the run's initial A (B stays 0)
            var kept = b.to(ScalarType.Float64).matmul(a.to(ScalarType.Float64));
            droppedSquared += (accumulated - kept).square().sum().item<double>();
            totalSquared += accumulated.square().sum().item<double>();
            next[module.KeyA].Dispose();
            next[module.KeyB].Dispose();
            next[module.KeyA] = a.MoveToOuterDisposeScope();
            next[module.KeyB] = b.MoveToOuterDisposeScope();
        }
        lastTruncation = totalSquared > 0 ? Math.Sqrt(droppedSquared / totalSquared) : 0;
        return next;
    }

    /// <summary>Refuses an update whose frozen part (the accumulated ΔW) differs from the global's: stacking would
    /// count the difference nowhere and silently lose it.</summary>
    static void CheckFrozen(LoraModule module, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates, int fresh)
    {
        int k = FloraStacking.ResidualRank(global[module.KeyB], global[module.KeyA], fresh);
        using var scope = NewDisposeScope();
        foreach (var update in updates)
        {
            if (!update.Weights[module.KeyA][..k].equal(global[module.KeyA][..k]).all().item<bool>())
                throw new AggregationException($"client {update.ClientId} changed the frozen first {k} components of '{module.KeyA}' (FLoRA's accumulated update)", update.ClientId, module.KeyA);
            if (!update.Weights[module.KeyB][.., ..k].equal(global[module.KeyB][.., ..k]).all().item<bool>())
                throw new AggregationException($"client {update.ClientId} changed the frozen first {k} components of '{module.KeyB}' (FLoRA's accumulated update)", update.ClientId, module.KeyB);
        }
    }

    /// <inheritdoc/>
    public RoundRecord Annotate(RoundRecord record)
    {
        if (lastTruncation is not { } error) return record;
        lastTruncation = null;
        return AggregationMetrics.With(record, new Dictionary<string, double> { [TruncationMetric] = error });
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> State => new Dictionary<string, Tensor>();

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Count > 0) throw new ArgumentException($"flora keeps no server state, but the checkpoint holds {state.Count} tensors", nameof(state));
    }
}
