using System.Text.Json.Serialization;

namespace FedLlm.Bench;

/// <summary>
/// What one implementation measured: the raw timed steps, and the statistics derived from them. The PyTorch script
/// prints the same fields as snake_case JSON.
/// </summary>
public sealed record StepMeasurement
{
    [JsonPropertyName("implementation")] public required string Implementation { get; init; }
    [JsonPropertyName("threads")] public int Threads { get; init; }

    /// <summary>Base precision (fp32, bf16, int8, nf4) and whether layers were recomputed in backward.</summary>
    [JsonPropertyName("precision")] public string Precision { get; init; } = "fp32";
    [JsonPropertyName("activation_checkpointing")] public bool ActivationCheckpointing { get; init; }

    /// <summary>FLOPs of one step by <see cref="BenchModels.StepFlops"/>, and the GEMM ceiling of the compute dtype (<see cref="GemmCeiling"/>).</summary>
    [JsonPropertyName("step_flops")] public double StepFlops { get; init; }
    [JsonPropertyName("ceiling_flops_per_s")] public double CeilingFlopsPerSecond { get; init; }

    [JsonPropertyName("achieved_flops_per_s")] public double AchievedFlopsPerSecond => StepSeconds.Count == 0 ? 0 : StepFlops / MedianStepSeconds;

    /// <summary>Model FLOPs utilisation: achieved FLOP/s over the measured ceiling of the same dtype.</summary>
    [JsonPropertyName("mfu")] public double Mfu => CeilingFlopsPerSecond > 0 ? AchievedFlopsPerSecond / CeilingFlopsPerSecond : 0;
    [JsonPropertyName("tokens_per_step")] public long TokensPerStep { get; init; }

    /// <summary>Wall time of each timed step.</summary>
    [JsonPropertyName("step_seconds")] public IReadOnlyList<double> StepSeconds { get; init; } = Array.Empty<double>();

    /// <summary>Process CPU time (user + system, all threads) of each timed step; spin-waiting OpenMP threads count too.</summary>
    [JsonPropertyName("cpu_step_seconds")] public IReadOnlyList<double> CpuStepSeconds { get; init; } = Array.Empty<double>();
    [JsonPropertyName("losses")] public IReadOnlyList<double> Losses { get; init; } = Array.Empty<double>();

    /// <summary>Peak resident set of the whole process (VmHWM / ru_maxrss), model build included.</summary>
    [JsonPropertyName("peak_rss_bytes")] public long PeakRssBytes { get; init; }
    [JsonPropertyName("rss_after_build_bytes")] public long RssAfterBuildBytes { get; init; }
    [JsonPropertyName("build_seconds")] public double BuildSeconds { get; init; }
    [JsonPropertyName("trainable_parameters")] public long TrainableParameters { get; init; }

    [JsonPropertyName("median_step_seconds")] public double MedianStepSeconds => Median(StepSeconds);

    /// <summary>Tokens per step divided by the median timed step: the figure.</summary>
    [JsonPropertyName("tokens_per_s")] public double TokensPerSecond => TokensPerStep / MedianStepSeconds;

    /// <summary>Tokens per step divided by the fastest timed step: the least disturbed by other load on a shared machine.</summary>
    [JsonPropertyName("best_tokens_per_s")] public double BestTokensPerSecond => TokensPerStep / StepSeconds.Min();

    [JsonPropertyName("median_cpu_step_seconds")] public double MedianCpuStepSeconds => Median(CpuStepSeconds);

    /// <summary>All timed steps of several rounds as one measurement; the peak is the highest of the rounds, the RSS after build the first round's.</summary>
    public static StepMeasurement Combine(IReadOnlyList<StepMeasurement> rounds)
    {
        if (rounds.Count == 0) throw new ArgumentException("no rounds", nameof(rounds));
        return rounds[0] with
        {
            StepSeconds = rounds.SelectMany(r => r.StepSeconds).ToList(),
            CpuStepSeconds = rounds.SelectMany(r => r.CpuStepSeconds).ToList(),
            Losses = rounds.SelectMany(r => r.Losses).ToList(),
            PeakRssBytes = rounds.Max(r => r.PeakRssBytes),
            BuildSeconds = Median(rounds.Select(r => r.BuildSeconds).ToList()),
        };
    }

    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("no values", nameof(values));
        var sorted = values.OrderBy(v => v).ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
