using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace FedLlm.Evaluation;

/// <summary>
/// The results file of <c>fedllm eval</c>: task, item count, metrics, groups, every scored sample, the settings the run
/// used and its wall time, as one JSON object.
/// </summary>
public static class EvaluationReportJson
{
    static readonly JsonSerializerOptions Options = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The report as JSON: metrics, groups and samples, with the run's <paramref name="settings"/> and its
    /// duration in <paramref name="seconds"/>.</summary>
    public static JsonObject ToJson(EvaluationReport report, IReadOnlyDictionary<string, string?> settings, double seconds)
    {
        var groups = new JsonObject();
        foreach (var (name, metrics) in report.Groups) groups[name] = Metrics(metrics);
        var samples = new JsonArray(report.Samples.Select(s => (JsonNode)new JsonObject
        {
            ["id"] = s.Id, ["group"] = s.Group, ["prompt"] = s.Prompt, ["output"] = s.Output, ["reference"] = s.Reference, ["score"] = s.Score,
        }).ToArray());
        var settingsJson = new JsonObject();
        foreach (var (key, value) in settings) settingsJson[key] = value;
        return new JsonObject
        {
            ["task"] = report.Task,
            ["items"] = report.Items,
            ["metrics"] = Metrics(report.Metrics),
            ["groups"] = groups,
            ["samples"] = samples,
            ["settings"] = settingsJson,
            ["seconds"] = Math.Round(seconds, 3),
        };
    }

    /// <summary>Writes <see cref="ToJson"/> to <paramref name="path"/> (indented), creating the folder.</summary>
    public static void Write(string path, EvaluationReport report, IReadOnlyDictionary<string, string?> settings, double seconds)
    {
        if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } dir) Directory.CreateDirectory(dir);
        File.WriteAllText(path, ToJson(report, settings, seconds).ToJsonString(Options));
    }

    static JsonObject Metrics(IReadOnlyDictionary<string, double> metrics)
    {
        var json = new JsonObject();
        // NaN/∞ are not JSON; a metric that cannot be computed is written as null.
        foreach (var (name, value) in metrics) json[name] = double.IsFinite(value) ? value : null;
        return json;
    }
}
