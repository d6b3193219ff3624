namespace FedLlm.Evaluation;

/// <summary>What the user asked for: a task name, its data (a file or folder) and the task's own key=value settings.</summary>
public sealed record EvaluationTaskSpec(string Name, string DataPath, IReadOnlyDictionary<string, string> Parameters)
{
    /// <summary>A parameter's value, or <paramref name="fallback"/> when it was not given.</summary>
    public string? Get(string key, string? fallback = null) => Parameters.TryGetValue(key, out var v) ? v : fallback;

    public bool GetBool(string key, bool fallback) => Get(key) switch
    {
        null => fallback,
        "true" or "1" or "yes" => true,
        "false" or "0" or "no" => false,
        var v => throw new ArgumentException($"task '{Name}': parameter {key}={v} is not true or false"),
    };

    public double GetDouble(string key, double fallback) => Get(key) is not { } v ? fallback
        : double.TryParse(v, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double d) ? d
        : throw new ArgumentException($"task '{Name}': parameter {key}={v} is not a number");

    /// <summary>Fails on any parameter the task does not read, so a typo is not silently ignored.</summary>
    public void RequireKnown(params string[] known)
    {
        var unknown = Parameters.Keys.Where(k => !known.Contains(k)).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException($"task '{Name}' has no parameter {string.Join(", ", unknown)}; it takes: {(known.Length == 0 ? "none" : string.Join(", ", known))}");
    }
}
