using FedLlm.Alignment;

namespace FedLlm.Runs;

/// <summary>What clients train their adapters for: instruction tuning ("sft", the causal-LM loss on response tokens)
/// or preference alignment ("dpo", Rafailov et al. 2023, with <see cref="Dpo"/>'s settings).</summary>
public sealed record LocalObjective
{
    /// <summary>The two tasks.</summary>
    public static readonly IReadOnlyList<string> Tasks = ["sft", "dpo"];

    /// <summary>"sft" or "dpo".</summary>
    public string Task { get; init; } = "sft";

    /// <summary>DPO's β and label smoothing (read only when <see cref="Task"/> is "dpo").</summary>
    public DpoOptions Dpo { get; init; } = new();

    /// <summary>Whether the task is DPO.</summary>
    public bool IsDpo => Task == "dpo";

    /// <summary>Throws, naming the setting, when the task is unknown or DPO's settings are invalid.</summary>
    public void Validate()
    {
        if (!Tasks.Contains(Task)) throw new ArgumentException($"task '{Task}': expected {string.Join(" or ", Tasks)}");
        if (IsDpo) Dpo.Validate();
    }
}
