using FedLlm.Federation.Personalization;
using static TorchSharp.torch;

namespace FedLlm.Federation.LowRank;

/// <summary>
/// The client side of FLoRA (<see cref="Flora"/>): the first k components of every module (the accumulated update)
/// are frozen, and the client trains a fresh module of its rank r_i in the next r_i components; the rest stay zero.
/// </summary>
/// <remarks>
/// Frozen means frozen for every part of the step: their gradients are zeroed before clipping (so the clip norm is that
/// of the fresh module alone, as in FLoRA where the accumulated update sits in the base weights) and their values are
/// restored after each optimizer step (AdamW's decoupled weight decay would otherwise shrink them). The components beyond
/// k + r_i start at zero and stay there (each factor's gradient is a product with the other's zeroed part). The rank is
/// the client's own (client.yaml <c>lora_rank</c>), else the server's table, else all f fresh components. Nothing is
/// kept between rounds: the accumulated update arrives in the global adapter every round.
/// </remarks>
public sealed class FloraClientHooks(int? ownRank = null) : IClientHooks
{
    /// <summary>The client hook's name.</summary>
    public const string HookName = "flora";

    /// <inheritdoc/>
    public string Name => HookName;

    /// <inheritdoc/>
    public void BeforeTraining(ClientRoundContext context)
    {
        var live = context.Trainable.ToDictionary(p => p.Key, p => p.Parameter);
        var modules = LoraProducts.Modules(live);
        if (modules.Count == 0) return;
        int layoutRank = (int)live[modules[0].KeyA].shape[0];
        int fresh = FloraStacking.FreshRank(context.Instructions.Config, layoutRank, context.Instructions.Round);
        int rank = ownRank ?? RankBudget.RankOf(context.Instructions, context.ClientId) ?? fresh;
        if (rank > fresh)
            throw new InvalidOperationException($"round {RoundRecord.NumberOf(context.Instructions.Round)}: client {context.ClientId} has rank {rank}, " +
                $"but the server's FLoRA layout leaves {fresh} fresh components ('{FloraStacking.FreshRankKey}'); lower the client's rank");
        var frozen = new List<(Tensor A, Tensor B, int K)>();
        using (no_grad())
        {
            foreach (var module in modules)
            {
                var a = live[module.KeyA];
                var b = live[module.KeyB];
                int k = FloraStacking.ResidualRank(b, a, fresh);
                if (k + rank < a.shape[0]) a[(k + rank).., ..] = 0;
                if (k + rank < b.shape[1]) b[.., (k + rank)..] = 0;
                frozen.Add((a, b, k));
            }
        }
        context.BeforeGradientClip(() =>
        {
            using var noGrad = no_grad();
            foreach (var (a, b, k) in frozen)
            {
                if (a.grad is { } gradA) gradA[..k] = 0;
                if (b.grad is { } gradB) gradB[.., ..k] = 0;
            }
        });
        context.AfterOptimizerStep(_ =>
        {
            using var noGrad = no_grad();
            for (int i = 0; i < modules.Count; i++)
            {
                var (a, b, k) = frozen[i];
                a[..k] = context.Global[modules[i].KeyA][..k];
                b[.., ..k] = context.Global[modules[i].KeyB][.., ..k];
            }
        });
        context.Report("rank", rank);
        context.Report(PayloadBytes.MetricName, modules.Sum(m => (long)rank * (live[m.KeyA].shape[1] + live[m.KeyB].shape[0]) * live[m.KeyA].ElementSize));
    }

    /// <inheritdoc/>
    public void AfterTraining(ClientRoundContext context)
    {
    }
}
