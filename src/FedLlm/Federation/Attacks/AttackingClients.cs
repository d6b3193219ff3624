using System.Globalization;
using static TorchSharp.torch;

namespace FedLlm.Federation.Attacks;

/// <summary>
/// Simulated clients of which some attack: the attackers' instructions gain the attack's client hook
/// (<see cref="ModelPoisoningHooks"/>); everyone else trains as told. The server and its strategy do not know who attacks.
/// Data-poisoning attacks need no hook (their data is poisoned when it is loaded, see <see cref="DataPoisoning"/>).
/// </summary>
public sealed class AttackingClients : IClientExecutor, IDisposable
{
    readonly IClientExecutor inner;
    readonly AttackOptions attack;
    readonly IReadOnlySet<int> attackers;
    readonly long seed;

    /// <summary>Wraps <paramref name="inner"/>; <paramref name="attackers"/> are client indices.</summary>
    public AttackingClients(IClientExecutor inner, AttackOptions attack, IReadOnlySet<int> attackers, long seed)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(attack);
        ArgumentNullException.ThrowIfNull(attackers);
        this.inner = inner;
        this.attack = attack;
        this.attackers = attackers;
        this.seed = seed;
    }

    /// <inheritdoc/>
    public async Task<IReadOnlyList<ClientUpdate>> TrainRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default)
    {
        var honest = clients.Where(c => !attackers.Contains(c) || attack.PoisonsData).ToList();
        var attacking = clients.Where(c => attackers.Contains(c) && !attack.PoisonsData).ToList();
        var updates = new List<ClientUpdate>();
        if (honest.Count > 0) updates.AddRange(await inner.TrainRoundAsync(round, honest, global, instructions, cancellationToken));
        if (attacking.Count > 0)
        {
            var config = new Dictionary<string, string>(instructions.Config)
            {
                [ModelPoisoningHooks.ScaleKey] = ClientInstructions.FormatNumber(attack.ScaleFactor),
                [ModelPoisoningHooks.SeedKey] = seed.ToString(CultureInfo.InvariantCulture),
            };
            var poisoned = instructions with { Hooks = [.. instructions.Hooks, ModelPoisoningHooks.HookName(attack.Kind)], Config = config };
            updates.AddRange(await inner.TrainRoundAsync(round, attacking, global, poisoned, cancellationToken));
        }
        return updates;
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> SnapshotState() => inner.SnapshotState();

    /// <inheritdoc/>
    public void RestoreState(IReadOnlyDictionary<string, Tensor> state) => inner.RestoreState(state);

    /// <inheritdoc/>
    public (long Sent, long Received)? MeasuredTraffic(int round) => inner.MeasuredTraffic(round);

    /// <summary>Disposes the inner executor.</summary>
    public void Dispose() => (inner as IDisposable)?.Dispose();
}
