using System.Text.Json.Nodes;
using FedLlm.Evaluation;
using FedLlm.Tests.Data;

namespace FedLlm.Tests.Evaluation;

public class EvaluationReportJsonTests
{
    [Fact]
    public void The_results_file_holds_metrics_groups_samples_settings_and_seconds()
    {
        using var dir = new TempDirectory();
        var report = new EvaluationReport("fpb", 2,
            new Dictionary<string, double> { ["accuracy"] = 0.5, ["macro_f1"] = double.NaN },
            new Dictionary<string, IReadOnlyDictionary<string, double>> { ["positive"] = new Dictionary<string, double> { ["f1"] = 2.0 / 3 } },
            [new EvaluationSample("0", "Instruction: …", "positive", "positive", 1, "positive"), new EvaluationSample("1", "p", "neutral", "negative", 0)]);
        string path = Path.Combine(dir.Path, "sub", "results.json");
        EvaluationReportJson.Write(path, report, new Dictionary<string, string?> { ["few_shot"] = "0", ["adapter"] = null }, 1.23456);
        var json = JsonNode.Parse(File.ReadAllText(path))!;
        Assert.Equal("fpb", json["task"]!.GetValue<string>());
        Assert.Equal(0.5, json["metrics"]!["accuracy"]!.GetValue<double>());
        Assert.Null(json["metrics"]!["macro_f1"]); // NaN is not JSON
        Assert.Equal(2.0 / 3, json["groups"]!["positive"]!["f1"]!.GetValue<double>());
        Assert.Equal("negative", json["samples"]![1]!["reference"]!.GetValue<string>());
        Assert.Equal("0", json["settings"]!["few_shot"]!.GetValue<string>());
        Assert.Equal(1.235, json["seconds"]!.GetValue<double>());
    }
}
