using FedLlm.Federation;

namespace FedLlm.Privacy;

/// <summary>
/// Reports the privacy spent after every round on the round's record (metrics.jsonl, results.json): the outermost
/// decorator of a DP run, so what it reports is what the plan's mechanism released.
/// </summary>
/// <remarks>ε after round r (0-based) is <see cref="PrivacyPlan.EpsilonAfter"/>(r + 1): rounds are identical sampled
/// Gaussian mechanisms, so the accountant needs no state and a resumed run reports the same ε.</remarks>
public sealed class PrivacyAccounting(IFederatedStrategy innerStrategy, PrivacyPlan plan) : DelegatingStrategy(innerStrategy)
{
    /// <summary>The plan the numbers come from.</summary>
    public PrivacyPlan Plan { get; } = plan ?? throw new ArgumentNullException(nameof(plan));

    /// <inheritdoc/>
    public override RoundRecord Annotate(RoundRecord record)
    {
        var spent = Plan.EpsilonAfter(record.Round + 1);
        return base.Annotate(record) with { Privacy = new RoundPrivacy(double.IsFinite(spent.Epsilon) ? spent.Epsilon : null, spent.Delta, Plan.NoiseMultiplier, Plan.SamplingRate) };
    }
}
