namespace FedLlm.Peft;

/// <summary>
/// LoRA hyperparameters (Hu et al., 2021) with PEFT's defaults: rank 8, alpha 8 in PEFT's LoraConfig but 16 in most
/// Llama recipes (OpenFedLLM's config.py), dropout 0.05 as OpenFedLLM sets it.
/// </summary>
public sealed record LoraOptions
{
    /// <summary>The rank r of the update B·A.</summary>
    public int Rank { get; init; } = 8;

    /// <summary>The scale numerator: the update is multiplied by alpha / r (alpha / √r with rsLoRA).</summary>
    public double Alpha { get; init; } = 16;

    /// <summary>Dropout applied to the adapter's input only, never to the frozen path.</summary>
    public double Dropout { get; init; } = 0.05;

    /// <summary>Projection names to wrap, matched against the last segment of the module path as PEFT does.</summary>
    public IReadOnlyList<string> TargetModules { get; init; } = AllLlamaProjections;

    /// <summary>rsLoRA (Kalajdzievski, 2023): scale by alpha/√r instead of alpha/r.</summary>
    public bool UseRsLora { get; init; }

    /// <summary>The seven projections of a Llama decoder layer that can take an adapter.</summary>
    public static readonly IReadOnlyList<string> AllLlamaProjections =
        new[] { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" };

    /// <summary>alpha / r, or alpha / √r with <see cref="UseRsLora"/>: the factor on B·A.</summary>
    public double Scaling => UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Rank or alpha not positive, or dropout outside [0, 1).</exception>
    /// <exception cref="ArgumentException">No target module, or one that is not a Llama projection.</exception>
    public void Validate()
    {
        if (Rank <= 0) throw new ArgumentOutOfRangeException(nameof(Rank), Rank, "LoRA rank must be positive");
        if (Alpha <= 0) throw new ArgumentOutOfRangeException(nameof(Alpha), Alpha, "LoRA alpha must be positive");
        if (Dropout is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "LoRA dropout must be in [0, 1)");
        if (TargetModules.Count == 0) throw new ArgumentException("LoRA needs at least one target module", nameof(TargetModules));
        var unknown = TargetModules.Except(AllLlamaProjections).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException(
                $"unknown LoRA target module(s) {string.Join(", ", unknown)}; Llama-family projections are {string.Join(" ", AllLlamaProjections)}",
                nameof(TargetModules));
    }
}
