using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace FedLlm.Bench;

/// <summary>
/// The precision sweep of <c>train-step</c>: tokens/s, peak RSS and MFU per (implementation, precision, activation
/// checkpointing), pooled over rounds, with the issue's ratios (bf16 vs fp32, FedLlm vs PyTorch in the same precision).
/// </summary>
public sealed record SweepReport
{
    [JsonPropertyName("command")] public string Command { get; init; } = "train-step";
    [JsonPropertyName("options")] public required TrainStepOptions Options { get; init; }
    [JsonPropertyName("environment")] public required IReadOnlyDictionary<string, string> Environment { get; init; }
    [JsonPropertyName("rounds")] public required IReadOnlyList<IReadOnlyList<StepMeasurement>> Rounds { get; init; }

    /// <summary>Every round's measurement of the same configuration pooled into one.</summary>
    [JsonPropertyName("pooled")]
    public IReadOnlyList<StepMeasurement> Pooled => Rounds.SelectMany(r => r)
        .GroupBy(m => (m.Implementation, m.Precision, m.ActivationCheckpointing))
        .Select(g => StepMeasurement.Combine(g.ToList()))
        .ToList();

    StepMeasurement? Find(string implementation, string precision, bool checkpointing = false) =>
        Pooled.FirstOrDefault(m => m.Implementation == implementation && m.Precision == precision && m.ActivationCheckpointing == checkpointing);

    public void WriteTable()
    {
        static string F(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);
        static string Gib(long bytes) => F(bytes / (1024.0 * 1024 * 1024), "F2");
        Console.WriteLine($"train-step: SmolLM-135M shape, LoRA r16 x 7, batch {Options.Batch}x{Options.Seq}, {Options.Threads} threads, {Options.Steps} timed steps per round, {Rounds.Count} round(s)");
        Console.WriteLine("| implementation | base | act. ckpt | tokens/s (median) | best tokens/s | step s | CPU s / step | peak RSS GiB | GEMM ceiling GFLOP/s | achieved GFLOP/s | MFU |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var m in Pooled)
            Console.WriteLine($"| {m.Implementation} | {m.Precision} | {(m.ActivationCheckpointing ? "on" : "off")} | {F(m.TokensPerSecond, "F1")} | {F(m.BestTokensPerSecond, "F1")} | " +
                $"{F(m.MedianStepSeconds, "F2")} | {F(m.MedianCpuStepSeconds, "F1")} | {Gib(m.PeakRssBytes)} | {(m.CeilingFlopsPerSecond > 0 ? F(m.CeilingFlopsPerSecond / 1e9, "F0") : "")} | " +
                $"{(m.StepFlops > 0 ? F(m.AchievedFlopsPerSecond / 1e9, "F0") : "")} | {(m.Mfu > 0 ? F(100 * m.Mfu, "F0") + " %" : "")} |");
        void Ratio(string what, StepMeasurement? a, StepMeasurement? b, double target)
        {
            if (a is null || b is null) return;
            double r = a.TokensPerSecond / b.TokensPerSecond;
            Console.WriteLine($"{what}: {F(r, "F2")}x (target >= {F(target, "F1")}x: {(r >= target ? "met" : "MISSED")})");
        }
        Ratio("fedllm bf16 / fedllm fp32 tokens/s", Find("fedllm", "bf16"), Find("fedllm", "fp32"), 1.5);
        Ratio("fedllm fp32 / pytorch fp32 tokens/s", Find("fedllm", "fp32"), Find("pytorch", "fp32"), 1.2);
        Ratio("fedllm bf16 / pytorch bf16 tokens/s", Find("fedllm", "bf16"), Find("pytorch", "bf16"), 1.2);
        foreach (var p in new[] { "fp32", "bf16", "int8", "nf4" })
            if (Find("fedllm", p) is { } library && Find("fedllm, glibc malloc defaults", p) is { } glibc)
                Console.WriteLine($"allocator policy ({p}): step {F(glibc.MedianStepSeconds, "F2")} → {F(library.MedianStepSeconds, "F2")} s ({F(glibc.MedianStepSeconds / library.MedianStepSeconds, "F2")}x), " +
                    $"CPU {F(glibc.MedianCpuStepSeconds, "F1")} → {F(library.MedianCpuStepSeconds, "F1")} s, peak RSS {Gib(glibc.PeakRssBytes)} → {Gib(library.PeakRssBytes)} GiB");
        foreach (var p in new[] { "fp32", "bf16", "int8", "nf4" })
            if (Find("fedllm", p, false) is { } off && Find("fedllm", p, true) is { } on)
                Console.WriteLine($"activation checkpointing ({p}): peak RSS {Gib(off.PeakRssBytes)} → {Gib(on.PeakRssBytes)} GiB, step {F(off.MedianStepSeconds, "F1")} → {F(on.MedianStepSeconds, "F1")} s ({F(on.MedianStepSeconds / off.MedianStepSeconds, "F2")}x)");
        for (int i = 0; i < Rounds.Count; i++)
            foreach (var m in Rounds[i])
                Console.WriteLine($"round {i + 1} {m.Implementation} {m.Precision}{(m.ActivationCheckpointing ? " +ckpt" : "")} steps (s): {string.Join(" ", m.StepSeconds.Select(s => F(s, "F2")))}");
    }

    public void WriteJson(string path) =>
        File.WriteAllText(path, JsonSerializer.Serialize(this, new JsonSerializerOptions { WriteIndented = true }) + "\n");
}
