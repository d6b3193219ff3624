using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using Spectre.Console;

namespace FedLlm.Bench;

/// <summary>One round: FedLlm, then PyTorch (null with --skip-pytorch).</summary>
public sealed record TrainStepRound(
    [property: JsonPropertyName("fedllm")] StepMeasurement FedLlm,
    [property: JsonPropertyName("pytorch")] StepMeasurement? PyTorch)
{
    [JsonPropertyName("tokens_per_s_ratio")]
    public double? TokensPerSecondRatio => PyTorch is null ? null : FedLlm.TokensPerSecond / PyTorch.TokensPerSecond;
}

/// <summary>The comparison the issue asks for: FedLlm vs PyTorch tokens/s and peak RSS, with the ratios against the targets.</summary>
public sealed record TrainStepReport
{
    /// <summary>FedLlm must reach at least this fraction of PyTorch's tokens/s.</summary>
    public const double TokensPerSecondTarget = 1.0;

    /// <summary>FedLlm's peak RSS may be at most this multiple of PyTorch's.</summary>
    public const double PeakRssTarget = 1.2;

    [JsonPropertyName("command")] public string Command { get; init; } = "train-step";
    [JsonPropertyName("options")] public required TrainStepOptions Options { get; init; }
    [JsonPropertyName("environment")] public required IReadOnlyDictionary<string, string> Environment { get; init; }
    [JsonPropertyName("rounds")] public required IReadOnlyList<TrainStepRound> Rounds { get; init; }

    /// <summary>Every timed FedLlm step of every round.</summary>
    [JsonPropertyName("fedllm")] public StepMeasurement FedLlm => StepMeasurement.Combine(Rounds.Select(r => r.FedLlm).ToList());

    [JsonPropertyName("pytorch")]
    public StepMeasurement? PyTorch => Rounds.Any(r => r.PyTorch is null) ? null : StepMeasurement.Combine(Rounds.Select(r => r.PyTorch!).ToList());

    /// <summary>FedLlm's median-step tokens/s over PyTorch's, all rounds pooled.</summary>
    [JsonPropertyName("tokens_per_s_ratio")]
    public double? TokensPerSecondRatio => PyTorch is { } p ? FedLlm.TokensPerSecond / p.TokensPerSecond : null;

    [JsonPropertyName("best_tokens_per_s_ratio")]
    public double? BestTokensPerSecondRatio => PyTorch is { } p ? FedLlm.BestTokensPerSecond / p.BestTokensPerSecond : null;

    [JsonPropertyName("peak_rss_ratio")]
    public double? PeakRssRatio => PyTorch is { } p ? (double)FedLlm.PeakRssBytes / p.PeakRssBytes : null;

    /// <summary>What else shapes the numbers: versions, and the allocator/OpenMP variables read at start-up.</summary>
    public static IReadOnlyDictionary<string, string> DescribeEnvironment()
    {
        var environment = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["dotnet"] = RuntimeInformation.FrameworkDescription,
            ["torchsharp"] = typeof(TorchSharp.torch).Assembly.GetName().Version?.ToString() ?? "?",
            ["os"] = RuntimeInformation.OSDescription,
            ["processors"] = System.Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture),
            ["loadavg_at_end"] = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "?",
        };
        foreach (var name in new[] { "MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "LD_PRELOAD" })
            if (System.Environment.GetEnvironmentVariable(name) is { } value) environment[name] = value;
        return environment;
    }

    public void WriteTable()
    {
        static string Gib(long bytes) => (bytes / (1024.0 * 1024 * 1024)).ToString("F2", CultureInfo.InvariantCulture);
        static string F(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);

        var fedLlm = FedLlm;
        var pyTorch = PyTorch;
        int steps = fedLlm.StepSeconds.Count;
        var table = new Table()
            .Title($"train-step: SmolLM-135M shape, LoRA r16 x 7, batch {Options.Batch}x{Options.Seq}, fp32, {Options.Threads} threads; {steps} timed steps each")
            .AddColumn("")
            .AddColumn(new TableColumn("tokens/s").RightAligned())
            .AddColumn(new TableColumn("best tok/s").RightAligned())
            .AddColumn(new TableColumn("step s").RightAligned())
            .AddColumn(new TableColumn("CPU s").RightAligned())
            .AddColumn(new TableColumn("peak RSS GiB").RightAligned())
            .AddColumn(new TableColumn("built GiB").RightAligned());
        foreach (var m in new[] { fedLlm, pyTorch })
        {
            if (m is null) continue;
            table.AddRow(m.Implementation, F(m.TokensPerSecond, "F1"), F(m.BestTokensPerSecond, "F1"), F(m.MedianStepSeconds, "F2"),
                F(m.MedianCpuStepSeconds, "F1"), Gib(m.PeakRssBytes), Gib(m.RssAfterBuildBytes));
        }
        if (TokensPerSecondRatio is { } speed && BestTokensPerSecondRatio is { } best && PeakRssRatio is { } memory)
        {
            table.AddRow("ratio", $"{F(speed, "F2")}x", $"{F(best, "F2")}x", "", "", $"{F(memory, "F2")}x", "");
            table.AddRow("target", $">= {F(TokensPerSecondTarget, "F1")}x", "", "", "", $"<= {F(PeakRssTarget, "F1")}x", "");
            table.AddRow("", speed >= TokensPerSecondTarget ? "met" : "MISSED", "", "", "", memory <= PeakRssTarget ? "met" : "MISSED", "");
        }
        AnsiConsole.Write(table);
        // tokens/s, step s and CPU s are medians over all timed steps; the individual steps show the noise.
        for (int i = 0; i < Rounds.Count; i++)
            foreach (var m in new[] { Rounds[i].FedLlm, Rounds[i].PyTorch })
                if (m is not null)
                    Console.WriteLine($"round {i + 1} {m.Implementation,-7} steps (s): {string.Join(" ", m.StepSeconds.Select(s => F(s, "F2")))}");
    }

    public void WriteJson(string path)
    {
        var json = JsonSerializer.Serialize(this, new JsonSerializerOptions { WriteIndented = true });
        File.WriteAllText(path, json + "\n");
    }
}
