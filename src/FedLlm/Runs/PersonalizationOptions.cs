using FedLlm.Federation.Personalization;

namespace FedLlm.Runs;

/// <summary>
/// Per-client evaluation of personalisation (YAML <c>personalization:</c>): each client's global adapter and personal
/// adapters scored on that client's own held-out split (<see cref="RunDataOptions.ClientEvalFraction"/>), after a
/// simulated federation, or by the clients of a network one (<see cref="Federation.Personalization.PersonalEvaluationOnClients"/>).
/// </summary>
public sealed record PersonalizationOptions
{
    /// <summary>K, the local fine-tuning steps each client runs on its own training data from the final global adapter
    /// (the baseline personalisation papers report); 0 = no fine-tuning.</summary>
    public int FinetuneSteps { get; init; }

    /// <summary>Also train each client alone from the initial adapter for rounds × local steps (local-only) and score it
    /// on the same split.</summary>
    public bool LocalOnly { get; init; }

    /// <summary>What is wrong with these options in <paramref name="run"/> (empty when nothing).</summary>
    public IEnumerable<string> Failures(RunOptions run)
    {
        if (FinetuneSteps < 0) yield return $"personalization.finetune_steps must be ≥ 0, got {FinetuneSteps}";
        if (run.Data.ClientEvalFraction <= 0)
            yield return "personalization: scores each client on its own held-out split; set data.client_eval_fraction (e.g. 0.2)";
        if (run.Objective.IsDpo) yield return "personalization: per-client evaluation supports the sft task";
    }

    /// <summary>The algorithms that leave each client a personal adapter.</summary>
    public static IReadOnlyList<string> PersonalAlgorithms => PersonalizationAlgorithms.Names;
}
