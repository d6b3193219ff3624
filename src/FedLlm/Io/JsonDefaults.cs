using System.Text.Json;
using System.Text.Json.Serialization;

namespace FedLlm.Io;

/// <summary>The serializer settings for FedLlm's own JSON files (trainer state, metrics, run history).</summary>
public static class JsonDefaults
{
    /// <summary>
    /// Indented, and NaN / ±Infinity written as the strings "NaN", "Infinity", "-Infinity" (and read back) instead of
    /// making the writer throw: a diverged loss must end in a clear message, not in a serializer exception halfway
    /// through a checkpoint.
    /// </summary>
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>As <see cref="Options"/>, one line per document (JSON Lines).</summary>
    public static readonly JsonSerializerOptions Compact = new(Options) { WriteIndented = false };
}
