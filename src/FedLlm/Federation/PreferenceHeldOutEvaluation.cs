using FedLlm.Alignment;

namespace FedLlm.Federation;

/// <summary>Held-out DPO scores as a federation's per-round evaluation; kept here so that Alignment does not depend on Federation.</summary>
public static class PreferenceHeldOutEvaluation
{
    /// <summary>loss = the held-out DPO loss, score = reward accuracy, and TRL's "eval_" metrics.</summary>
    public static EvaluationResult Evaluate(this PreferenceHeldOut heldOut)
    {
        ArgumentNullException.ThrowIfNull(heldOut);
        var m = heldOut.Metrics();
        return new EvaluationResult(m.Loss, m.RewardsAccuracy, PreferenceHeldOut.ToEvalMetrics(m));
    }
}
