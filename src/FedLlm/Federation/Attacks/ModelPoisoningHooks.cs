using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Attacks;

/// <summary>
/// A simulated attacker's client hook: after honest local training it replaces the update Δ = y − x it would send by a
/// poisoned one. Runs only on attacker clients (<see cref="AttackingClients"/> adds it to their instructions), after
/// the algorithm's own hooks, so it changes exactly what leaves the client.
/// </summary>
/// <remarks>The three model-poisoning attacks of the robust-aggregation literature: sign flipping (Damaskinos et al.
/// 2018; Li et al., RSA, 2019), boosting by a factor (Bhagoji et al. 2019, "explicit boosting"), and a random Gaussian
/// update (Blanchard et al. 2017's omniscient-free baseline).</remarks>
public sealed class ModelPoisoningHooks : IClientHooks
{
    /// <summary>The instructions' key of s (scale, gaussian).</summary>
    public const string ScaleKey = "attack_scale";

    /// <summary>The instructions' key of the run seed of the gaussian attack's noise.</summary>
    public const string SeedKey = "attack_seed";

    /// <summary>The hook of <paramref name="kind"/> (a model-poisoning kind).</summary>
    public ModelPoisoningHooks(AttackKind kind)
    {
        if (kind is not (AttackKind.SignFlip or AttackKind.Scale or AttackKind.Gaussian))
            throw new ArgumentException($"{AttackOptions.Name(kind)} poisons data, not updates", nameof(kind));
        Kind = kind;
    }

    /// <summary>What it does.</summary>
    public AttackKind Kind { get; }

    /// <inheritdoc/>
    public string Name => HookName(Kind);

    /// <summary>"attack/sign-flip" …</summary>
    public static string HookName(AttackKind kind) => "attack/" + AttackOptions.Name(kind);

    /// <summary>One hook per model-poisoning kind.</summary>
    public static IReadOnlyList<IClientHooks> All { get; } =
        [new ModelPoisoningHooks(AttackKind.SignFlip), new ModelPoisoningHooks(AttackKind.Scale), new ModelPoisoningHooks(AttackKind.Gaussian)];

    /// <inheritdoc/>
    public void BeforeTraining(ClientRoundContext context)
    {
    }

    /// <inheritdoc/>
    public void AfterTraining(ClientRoundContext context)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var delta = TensorMaps.Difference(context.Local!, context.Global);
        Dictionary<string, Tensor> poisoned;
        switch (Kind)
        {
            case AttackKind.SignFlip:
                poisoned = delta.ToDictionary(kv => kv.Key, kv => -kv.Value);
                break;
            case AttackKind.Scale:
            {
                double s = context.Instructions.Number(ScaleKey);
                poisoned = delta.ToDictionary(kv => kv.Key, kv => kv.Value * s);
                break;
            }
            default:
            {
                // Noise of expected norm s·‖Δ‖: per-coordinate std s·‖Δ‖/√d.
                double s = context.Instructions.Number(ScaleKey);
                long d = delta.Values.Sum(t => t.numel());
                double std = s * Privacy.UpdateClipping.L2Norm(delta) / Math.Sqrt(d);
                long seed = (long)context.Instructions.Number(SeedKey);
                using var generator = Privacy.NoiseSource.FromRunSeed(seed).CreateGenerator(context.Instructions.Round, "attack/" + context.ClientId);
                poisoned = Privacy.GaussianNoise.Add(delta.ToDictionary(kv => kv.Key, kv => torch.zeros_like(kv.Value)), std, generator);
                break;
            }
        }
        var sent = PreAggregatedUpdate.Create(context.Global, poisoned, 1).Weights;
        foreach (var t in sent.Values) t.MoveToOuterDisposeScope();
        context.ReplaceLocal(sent);
        context.Report("attacker", 1);
    }
}
