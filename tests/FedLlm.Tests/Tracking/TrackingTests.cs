using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using FedLlm.Modeling;
using FedLlm.Tracking;
using FedLlm.Training;

namespace FedLlm.Tests.Tracking;

public sealed class TrackingTests : IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "fedllm-tracking-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
    }

    [Theory]
    [InlineData("123456789", 0xE3069283u)]   // the CRC-32C check value (RFC 3720 appendix B.4 catalogue)
    [InlineData("", 0x00000000u)]
    [InlineData("a", 0xC1D04330u)]
    public void Crc32C_matches_the_published_check_values(string text, uint expected) =>
        Assert.Equal(expected, Crc32C.Compute(Encoding.ASCII.GetBytes(text)));

    [Fact]
    public void TensorBoard_event_file_reads_back_in_an_independent_python_reader()
    {
        string path;
        using (var writer = new TensorBoardWriter(root))
        {
            writer.Log(1, new Dictionary<string, double> { ["train/loss"] = 2.5, ["train/learning_rate"] = 5e-5 });
            writer.Log(2, new Dictionary<string, double> { ["train/loss"] = 1.75 });
            writer.Log(300, new Dictionary<string, double> { ["eval/accuracy"] = 0.625 });
            path = writer.Path;
        }
        Assert.StartsWith("events.out.tfevents.", Path.GetFileName(path));

        var lines = RunReader(path);
        var scalars = lines.Select(l => JsonNode.Parse(l)!).Select(n => (Step: n["step"]!.GetValue<long>(), Tag: n["tag"]!.GetValue<string>(), Value: n["value"]!.GetValue<double>())).ToList();
        Assert.Equal(new[]
        {
            (1L, "train/loss", 2.5), (1L, "train/learning_rate", (double)5e-5f), (2L, "train/loss", 1.75), (300L, "eval/accuracy", 0.625),
        }, scalars);
    }

    [Fact]
    public void The_python_reader_refuses_a_corrupted_record()
    {
        string path;
        using (var writer = new TensorBoardWriter(root))
        {
            writer.Log(1, new Dictionary<string, double> { ["train/loss"] = 2.5 });
            path = writer.Path;
        }
        var bytes = File.ReadAllBytes(path);
        bytes[^6] ^= 0x01; // a bit of the last event's float
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<InvalidOperationException>(() => RunReader(path));
        Assert.Contains("bad data CRC", error.Message);
    }

    static IReadOnlyList<string> RunReader(string eventFile)
    {
        string script = Path.Combine(AppContext.BaseDirectory, "Fixtures", "tensorboard", "read_tfevents.py");
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(script);
        start.ArgumentList.Add(eventFile);
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"read_tfevents.py exited {process.ExitCode}: {error}");
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    [Fact]
    public void Csv_widens_its_header_when_a_new_metric_appears()
    {
        using var tracker = MetricsTrackers.Open("csv", root);
        tracker.Log(1, new Dictionary<string, double> { ["train/loss"] = 2.5 });
        tracker.Log(2, new Dictionary<string, double> { ["train/loss"] = 1.25 });
        tracker.Log(2, new Dictionary<string, double> { ["eval/loss"] = 3.0 });
        Assert.Equal("step,train/loss,eval/loss\n1,2.5,\n2,1.25,\n2,,3\n", File.ReadAllText(Path.Combine(root, "metrics.csv")));
        var error = Assert.Throws<ArgumentException>(() => MetricsTrackers.Open("wandb", root));
        Assert.Contains("tensorboard, csv, none", error.Message);
    }

    [Fact]
    public void Trainer_state_uses_Hugging_Face_log_history_and_round_trips()
    {
        var state = new TrainerState(2, 2, 2023, [2.25, 1.5],
            [new Dictionary<string, double> { ["loss"] = 2.25, ["rewards/chosen"] = 0.5 }, new Dictionary<string, double> { ["loss"] = 1.5, ["rewards/chosen"] = 0.75 }]);
        string json = TrainerStateJson.Write(state);
        var root = JsonNode.Parse(json)!;
        Assert.Equal(2, root["global_step"]!.GetValue<int>());
        var history = root["log_history"]!.AsArray();
        Assert.Equal(1.5, history[1]!["loss"]!.GetValue<double>());
        Assert.Equal(2, history[1]!["step"]!.GetValue<int>());
        Assert.Equal(0.75, history[1]!["rewards/chosen"]!.GetValue<double>());

        var back = TrainerStateJson.Read(json, "trainer_state.json");
        Assert.Equal(state.Step, back.Step);
        Assert.Equal(state.Seed, back.Seed);
        Assert.Equal(state.OptimizerSteps, back.OptimizerSteps);
        Assert.Equal(state.StepLosses, back.StepLosses);
        Assert.Equal(0.75, back.StepMetrics![1]!["rewards/chosen"]);

        var sft = TrainerStateJson.Read(TrainerStateJson.Write(state with { StepMetrics = null }), "x");
        Assert.Null(sft.StepMetrics);
        // FedLlm's earlier schema still resumes.
        var old = TrainerStateJson.Read("""{"Step":1,"OptimizerSteps":1,"Seed":7,"StepLosses":[3.5],"StepMetrics":null}""", "old.json");
        Assert.Equal([3.5], old.StepLosses);
        var broken = Assert.Throws<InvalidDataException>(() => TrainerStateJson.Read("""{"global_step":1,"log_history":[]}""", "broken.json"));
        Assert.Contains("broken.json", broken.Message);
    }

    [Fact]
    public void Model_name_is_the_hub_name_or_the_folder_name_never_a_local_path()
    {
        string folder = Path.Combine(root, "SmolLM-135M");
        Directory.CreateDirectory(folder);
        Assert.Equal("SmolLM-135M", ModelName.Of(folder));
        File.WriteAllText(Path.Combine(folder, "config.json"), """{"_name_or_path": "HuggingFaceTB/SmolLM-135M"}""");
        Assert.Equal("HuggingFaceTB/SmolLM-135M", ModelName.Of(folder + "/"));
        File.WriteAllText(Path.Combine(folder, "config.json"), """{"_name_or_path": "/home/someone/models/smol"}""");
        Assert.Equal("SmolLM-135M", ModelName.Of(folder));
    }
}
