using System.Globalization;
using FedLlm.Federation.Personalization;
using static TorchSharp.torch;

namespace FedLlm.Federation.LowRank;

/// <summary>How a client cuts the global adapter down to its rank budget r_i.</summary>
public enum RankTruncation
{
    /// <summary>Keep the first r_i rank components (A's first rows, B's first columns): HetLoRA.</summary>
    Slice,

    /// <summary>The best rank-r_i approximation of each module's B·A (its SVD): FlexLoRA.</summary>
    Svd,
}

/// <summary>
/// Heterogeneous LoRA ranks within the fixed adapter layout: a client with budget r_i &lt; r trains only r_i rank
/// components and leaves the rest at zero, so its update keeps the global layout (rank r, the validator's and the
/// codec's contract) with zero-padded factors, and the server aggregates padded factors or their products. The
/// instructions carry the per-client table (<see cref="RanksKey"/>, by client id) and the truncation
/// (<see cref="TruncationKey"/>).
/// </summary>
/// <remarks>
/// Rows of A and columns of B beyond r_i start at zero and stay there: their gradients are products with the other
/// factor's zeroed part, so AdamW moves them by 0. LoRA's scale α/r is the global layout's for every client (a true
/// rank-r_i adapter would use α/r_i); the payload a rank-r_i update needs, r_i·(in + out) values per module, is
/// reported as <see cref="PayloadBytes.MetricName"/>.
/// </remarks>
public static class RankBudget
{
    /// <summary>The client hook's name.</summary>
    public const string HookName = "rank-budget";

    /// <summary>
    /// The client hooks of a network client that declares its own rank budget (client.yaml <c>lora_rank</c>): the
    /// rank-budget hook (and FLoRA's, when registered) answers with <paramref name="ownRank"/> instead of looking the
    /// client up in the server's table.
    /// </summary>
    /// <param name="registry">The client's hooks (with the default rank-budget hook).</param>
    /// <param name="ownRank">This client's budget r_i.</param>
    /// <param name="globalRank">The run's LoRA rank r (from the server).</param>
    /// <param name="source">Where the budget was given, for the error message (e.g. "client.yaml lora_rank").</param>
    /// <exception cref="ArgumentException">The budget is not in 1 … r.</exception>
    public static AlgorithmRegistry WithOwnRank(AlgorithmRegistry registry, int ownRank, int globalRank, string source)
    {
        ArgumentNullException.ThrowIfNull(registry);
        if (ownRank < 1 || ownRank > globalRank)
            throw new ArgumentException($"{source} {ownRank} must be between 1 and the run's LoRA rank {globalRank}");
        registry = registry.Replacing(new RankBudgetClientHooks(ownRank));
        return registry.HookNames.Contains(FloraClientHooks.HookName) ? registry.Replacing(new FloraClientHooks(ownRank)) : registry;
    }

    /// <summary>Instructions key: "client-0=4,client-1=8,…".</summary>
    public const string RanksKey = "client_ranks";

    /// <summary>Instructions key: "slice" or "svd".</summary>
    public const string TruncationKey = "rank_truncation";

    /// <summary>The config entries for <paramref name="ranks"/> (client index → r_i; client ids from <paramref name="clientId"/>).</summary>
    public static Dictionary<string, string> Config(IReadOnlyList<int> ranks, Func<int, string> clientId, RankTruncation truncation) => new()
    {
        [RanksKey] = string.Join(",", ranks.Select((r, i) => $"{clientId(i)}={r.ToString(CultureInfo.InvariantCulture)}")),
        [TruncationKey] = truncation == RankTruncation.Slice ? "slice" : "svd",
    };

    /// <summary>The rank budget of <paramref name="clientId"/> in the instructions, or null when it has none.</summary>
    public static int? RankOf(ClientInstructions instructions, string clientId)
    {
        if (!instructions.Config.TryGetValue(RanksKey, out var table) || table.Length == 0) return null;
        foreach (var entry in table.Split(','))
        {
            int eq = entry.LastIndexOf('=');
            if (eq > 0 && entry[..eq] == clientId)
                return int.TryParse(entry[(eq + 1)..], NumberStyles.Integer, CultureInfo.InvariantCulture, out int rank) && rank > 0
                    ? rank
                    : throw new InvalidOperationException($"round {instructions.Round}: '{RanksKey}' gives client {clientId} rank '{entry[(eq + 1)..]}'");
        }
        return null;
    }

    /// <summary>Zeroes rank components r.. of every module (A's rows, B's columns) in place.</summary>
    public static void ZeroBeyond(IReadOnlyDictionary<string, Tensor> adapter, int rank)
    {
        using var noGrad = no_grad();
        foreach (var module in LoraProducts.Modules(adapter))
        {
            var a = adapter[module.KeyA];
            var b = adapter[module.KeyB];
            if (rank < a.shape[0]) a[rank.., ..] = 0;
            if (rank < b.shape[1]) b[.., rank..] = 0;
        }
    }

    /// <summary>Bytes a rank-<paramref name="rank"/> update of this layout needs: r·(in + out) values per module.</summary>
    public static long PayloadBytes(IReadOnlyDictionary<string, Tensor> adapter, int rank) =>
        LoraProducts.Modules(adapter).Sum(m =>
        {
            var a = adapter[m.KeyA];
            var b = adapter[m.KeyB];
            long r = Math.Min(rank, a.shape[0]);
            return r * (a.shape[1] + b.shape[0]) * a.ElementSize;
        });
}

/// <summary>
/// The client side of heterogeneous ranks: on receipt, cuts the global adapter to the client's budget (slice or SVD,
/// per the instructions); after training, reports the payload its rank needs and, with slicing, HetLoRA's rank
/// self-pruning: the client's rank drops by one when its last rank component carries less than
/// <see cref="PruneShare"/> of an average component's share of ‖ΔW‖ (kept in state counter "rank_budget").
/// </summary>
/// <remarks>Cho, Manoel, Joshi, Sahu, Ramage (HetLoRA, EMNLP 2024) prune by a decay factor on the last ranks' norm; the
/// share rule here is that idea in a form that needs no tuned schedule.</remarks>
public sealed class RankBudgetClientHooks(int? ownRank = null) : IClientHooks
{
    /// <summary>The fraction of an average component's share under which the last component is pruned.</summary>
    public const double PruneShare = 0.25;

    /// <summary>The client state counter of the pruned rank.</summary>
    public const string RankCounter = "rank_budget";

    /// <inheritdoc/>
    public string Name => RankBudget.HookName;

    /// <inheritdoc/>
    public void BeforeTraining(ClientRoundContext context)
    {
        if (Rank(context) is not { } rank) return;
        var live = context.Trainable.ToDictionary(p => p.Key, p => p.Parameter);
        if (Truncation(context) == RankTruncation.Slice)
        {
            RankBudget.ZeroBeyond(live, rank);
            return;
        }
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var module in LoraProducts.Modules(live))
        {
            var a = live[module.KeyA];
            var b = live[module.KeyB];
            var (newB, newA) = LoraProducts.Factor(b.matmul(a), rank, (int)a.shape[0], a.dtype);
            b.copy_(newB);
            a.copy_(newA);
        }
    }

    /// <inheritdoc/>
    public void AfterTraining(ClientRoundContext context)
    {
        if (Rank(context) is not { } rank) return;
        context.Report(PayloadBytes.MetricName, RankBudget.PayloadBytes(context.Local!, rank));
        context.Report("rank", rank);
        if (Truncation(context) != RankTruncation.Slice || rank <= 1) return;
        using var scope = NewDisposeScope();
        double last = 0, total = 0;
        foreach (var module in LoraProducts.Modules(context.Local!))
        {
            var a = context.Local![module.KeyA].to(ScalarType.Float64);
            var b = context.Local![module.KeyB].to(ScalarType.Float64);
            var share = b.norm(0, false, 2).mul(a.norm(1, false, 2)); // ‖b_j‖·‖a_j‖ = ‖b_j a_jᵀ‖_F per component j
            last += share[rank - 1].item<double>();
            total += share[..rank].sum().item<double>();
        }
        if (total > 0 && last < PruneShare * total / rank) context.State.SetCounter(RankCounter, rank - 1);
    }

    int? Rank(ClientRoundContext context)
    {
        int? budget = ownRank ?? RankBudget.RankOf(context.Instructions, context.ClientId);
        if (budget is not { } declared) return null;
        long pruned = context.State.Counter(RankCounter) ?? declared;
        return (int)Math.Min(pruned, declared);
    }

    static RankTruncation Truncation(ClientRoundContext context) =>
        context.Instructions.Config.GetValueOrDefault(RankBudget.TruncationKey) switch
        {
            "slice" => RankTruncation.Slice,
            "svd" => RankTruncation.Svd,
            var other => throw new InvalidOperationException($"round {context.Instructions.Round}: instruction '{RankBudget.TruncationKey}' is '{other}', expected slice or svd"),
        };
}
