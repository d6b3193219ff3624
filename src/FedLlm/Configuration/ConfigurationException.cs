namespace FedLlm.Configuration;

/// <summary>
/// Bad input that the user fixes: a flag, a YAML key or a value, named in <see cref="Exception.Message"/> (one line per
/// problem) with optional <see cref="Hints"/>. The CLI prints it as it is, without a stack trace.
/// </summary>
public sealed class ConfigurationException : Exception
{
    /// <summary>A configuration error described by <paramref name="message"/> (which names the file, line and key),
    /// with <paramref name="hints"/> on what to try next.</summary>
    public ConfigurationException(string message, IReadOnlyList<string>? hints = null, Exception? inner = null) : base(message, inner)
    {
        Hints = hints ?? [];
    }

    /// <summary>What to try next (the form a value takes, the known names…).</summary>
    public IReadOnlyList<string> Hints { get; }

    /// <summary>Throws one exception listing every problem, or returns when there is none.</summary>
    public static void ThrowIfAny(IReadOnlyList<string> problems, IReadOnlyList<string>? hints = null)
    {
        if (problems.Count == 0) return;
        throw new ConfigurationException(string.Join("\n", problems), hints);
    }
}
