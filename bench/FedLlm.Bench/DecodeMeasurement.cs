using System.Text.Json.Serialization;

namespace FedLlm.Bench;

/// <summary>
/// What one engine measured in one child process: per repetition the prefill (prompt → first token) and the decode
/// steps after it (one new token per sequence per step through the KV cache), wall and CPU time, and the greedy tokens.
/// </summary>
public sealed record DecodeMeasurement
{
    /// <summary>"llama.cpp" or "FedLlm".</summary>
    [JsonPropertyName("engine")] public required string Engine { get; init; }

    /// <summary>GGUF weight type (f32, f16) for llama.cpp; compute dtype (fp32, bf16) for FedLlm.</summary>
    [JsonPropertyName("precision")] public required string Precision { get; init; }
    [JsonPropertyName("batch")] public int Batch { get; init; }
    [JsonPropertyName("threads")] public int Threads { get; init; }
    [JsonPropertyName("prompt_tokens")] public int PromptTokens { get; init; }
    [JsonPropertyName("new_tokens")] public int NewTokens { get; init; }

    /// <summary>Wall seconds of each repetition's prefill: the prompt in one pass and the first new token chosen.</summary>
    [JsonPropertyName("prefill_seconds")] public IReadOnlyList<double> PrefillSeconds { get; init; } = [];

    /// <summary>Wall seconds of each repetition's decode: the remaining new_tokens − 1 steps.</summary>
    [JsonPropertyName("decode_seconds")] public IReadOnlyList<double> DecodeSeconds { get; init; } = [];

    /// <summary>Process CPU seconds (user + system, all threads) of each repetition, prefill and decode together.</summary>
    [JsonPropertyName("cpu_seconds")] public IReadOnlyList<double> CpuSeconds { get; init; } = [];

    /// <summary>The greedy continuation of the first sequence (the same in every repetition).</summary>
    [JsonPropertyName("tokens")] public IReadOnlyList<int> Tokens { get; init; } = [];

    /// <summary>llama.cpp only: the first sequence's greedy continuation with an F32 KV cache and flash attention off,
    /// the settings under which its F32 logits match FedLlm's (tests/FedLlm.Tests/Export/LlamaCppModel.cs).</summary>
    [JsonPropertyName("exact_tokens")] public IReadOnlyList<int>? ExactTokens { get; init; }

    [JsonPropertyName("load_average")] public string LoadAverage { get; init; } = "";

    /// <summary>Decode tokens/s of all sequences together: batch · (new_tokens − 1) / median decode seconds.</summary>
    [JsonPropertyName("decode_tokens_per_s")] public double DecodeTokensPerSecond => Batch * (NewTokens - 1) / StepMeasurement.Median(DecodeSeconds);

    /// <summary>Best repetition's decode tokens/s: the one least disturbed by other load on a shared machine.</summary>
    [JsonPropertyName("best_decode_tokens_per_s")] public double BestDecodeTokensPerSecond => Batch * (NewTokens - 1) / DecodeSeconds.Min();

    [JsonPropertyName("median_prefill_seconds")] public double MedianPrefillSeconds => StepMeasurement.Median(PrefillSeconds);

    /// <summary>CPU seconds per generated token (prefill included), median over repetitions.</summary>
    [JsonPropertyName("cpu_seconds_per_token")] public double CpuSecondsPerToken => StepMeasurement.Median(CpuSeconds) / (Batch * NewTokens);

    /// <summary>End-to-end tokens/s: batch · new_tokens / median (prefill + decode).</summary>
    [JsonPropertyName("end_to_end_tokens_per_s")] public double EndToEndTokensPerSecond =>
        Batch * NewTokens / StepMeasurement.Median(PrefillSeconds.Zip(DecodeSeconds, (p, d) => p + d).ToList());

    /// <summary>The first line of /proc/loadavg, read when the measurement ends.</summary>
    public static string ReadLoadAverage() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "";
}
