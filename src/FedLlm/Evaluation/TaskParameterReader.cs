using System.Globalization;

namespace FedLlm.Evaluation;

/// <summary>
/// Reads a task's <c>--param key=value</c> settings with types, and refuses any key the task does not know, so a typo
/// ("sample=10") is an error rather than a silently ignored setting.
/// </summary>
internal sealed class TaskParameterReader
{
    private readonly EvaluationTaskSpec _spec;
    private readonly HashSet<string> _known;

    /// <param name="spec">The task's spec.</param>
    /// <param name="known">Every parameter name the task reads.</param>
    /// <exception cref="ArgumentException">The spec holds a parameter not in <paramref name="known"/>.</exception>
    public TaskParameterReader(EvaluationTaskSpec spec, params string[] known)
    {
        ArgumentNullException.ThrowIfNull(spec);
        _spec = spec;
        _known = new HashSet<string>(known, StringComparer.Ordinal);
        var unknown = spec.Parameters.Keys.Where(k => !_known.Contains(k)).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException(
                $"Task '{spec.Name}': unknown parameter(s) {string.Join(", ", unknown.Select(k => $"'{k}'"))}. Known: {string.Join(", ", known)}.");
    }

    public string? String(string key)
    {
        CheckKnown(key);
        return _spec.Parameters.TryGetValue(key, out var value) ? value : null;
    }

    public int? Int(string key) => Parse<int>(key, s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : null, "an integer");

    public double? Double(string key) =>
        Parse<double>(key, s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v : null, "a number");

    public bool? Bool(string key) => Parse(key, s => s.ToLowerInvariant() switch
    {
        "true" or "1" or "yes" => true,
        "false" or "0" or "no" => false,
        _ => (bool?)null,
    }, "true or false");

    /// <summary>A comma-separated list of positive integers ("1,10,100").</summary>
    public IReadOnlyList<int>? IntList(string key)
    {
        var text = String(key);
        if (text is null) return null;
        var values = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) || v <= 0)
                throw new ArgumentException($"Task '{_spec.Name}': parameter '{key}' must be a comma-separated list of positive integers, got '{text}'.");
            values.Add(v);
        }

        if (values.Count == 0) throw new ArgumentException($"Task '{_spec.Name}': parameter '{key}' is empty.");
        return values;
    }

    private T? Parse<T>(string key, Func<string, T?> parse, string expected) where T : struct
    {
        var text = String(key);
        if (text is null) return null;
        return parse(text.Trim()) ?? throw new ArgumentException($"Task '{_spec.Name}': parameter '{key}' must be {expected}, got '{text}'.");
    }

    private void CheckKnown(string key)
    {
        // A programming error in the task, not a user error: every read key must be declared.
        if (!_known.Contains(key)) throw new InvalidOperationException($"Parameter '{key}' is read but not declared.");
    }
}
