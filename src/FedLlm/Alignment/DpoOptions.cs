namespace FedLlm.Alignment;

/// <summary>
/// DPO settings beyond the local-training knobs of <see cref="Training.TrainingOptions"/>. Defaults follow OpenFedLLM
/// (dpo_beta 0.1) and TRL (sigmoid loss, no label smoothing).
/// </summary>
public sealed record DpoOptions
{
    /// <summary>β: the inverse temperature of the implicit reward, i.e. how far the policy may move from the reference.</summary>
    public double Beta { get; init; } = 0.1;

    /// <summary>ε of conservative DPO: the assumed share of flipped preference labels; 0 = the paper's loss.</summary>
    public double LabelSmoothing { get; init; }

    /// <summary>Throws on the first invalid setting.</summary>
    public void Validate()
    {
        if (!(Beta > 0) || double.IsInfinity(Beta)) throw new ArgumentOutOfRangeException(nameof(Beta), Beta, "must be positive and finite");
        if (!(LabelSmoothing >= 0 && LabelSmoothing < 0.5))
            throw new ArgumentOutOfRangeException(nameof(LabelSmoothing), LabelSmoothing, "must be in [0, 0.5)");
    }
}
