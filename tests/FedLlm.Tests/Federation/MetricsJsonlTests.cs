using System.Text.Json.Nodes;
using FedLlm.Federation;
using FedLlm.Tests.Data;

namespace FedLlm.Tests.Federation;

public class MetricsJsonlTests
{
    static RoundRecord Record(int round) => new()
    {
        Round = round, LearningRate = 0.01, Clients = ["client-3"], ClientLoss = new Dictionary<string, double> { ["client-3"] = 0.5 },
        UpdateNorms = new Dictionary<string, double> { ["client-3"] = 2 }, GlobalStepNorm = 1.5, EvalLoss = 0.7, EvalScore = 0.25,
        EvalMetrics = new Dictionary<string, double> { ["eval_rewards/margins"] = 3 }, BytesSent = 10, BytesReceived = 20, Seconds = 1.25,
    };

    [Fact]
    public void A_line_is_snake_case_with_rounds_numbered_from_one_and_metric_names_kept()
    {
        var line = JsonNode.Parse(MetricsJsonl.Line(Record(0)))!;

        Assert.Equal(1, line["round"]!.GetValue<int>());
        Assert.Equal(0.5, line["client_loss"]!["client-3"]!.GetValue<double>());
        Assert.Equal(1.5, line["global_step_norm"]!.GetValue<double>());
        Assert.Equal(3, line["eval_metrics"]!["eval_rewards/margins"]!.GetValue<double>());
        Assert.Null(line["Round"]);
    }

    [Fact]
    public void Reading_back_accepts_the_snake_case_schema_and_the_old_PascalCase_one()
    {
        using var dir = new TempDirectory();
        string fresh = dir.File("new.jsonl", MetricsJsonl.Text([Record(0), Record(1)]));
        string old = dir.File("old.jsonl", System.Text.Json.JsonSerializer.Serialize(Record(4)) + "\n");

        var rounds = MetricsJsonl.Read(fresh);
        var legacy = MetricsJsonl.Read(old);

        Assert.Equal([0, 1], rounds.Select(r => r.Round));
        Assert.Equal(0.25, rounds[1].EvalScore);
        Assert.Equal(4, Assert.Single(legacy).Round);
        Assert.Equal(5, legacy[0].Number);
        var bad = dir.File("bad.jsonl", "{\"x\":1}\n");
        var error = Assert.Throws<InvalidDataException>(() => MetricsJsonl.Read(bad));
        Assert.Contains("line 1", error.Message);
    }
}
