using FedLlm.Configuration;
using FedLlm.Federation;
using FedLlm.Runs;

namespace FedLlm.Tests.Cli;

/// <summary>Resume safety: a run folder's fingerprint refuses a resume with other settings and names what differs.</summary>
public sealed class RunFingerprintTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("fedllm-fingerprint-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    RunFingerprint Of(string dataPath, double learningRate, long seed = 2023) =>
        RunFingerprint.Empty.WithData("data.train_sha256", dataPath)
            .WithProperties("federation", new FederationOptions { LearningRate = learningRate, Seed = seed })
            .With("algorithm", "fedavg");

    [Fact]
    public void Resuming_with_the_same_settings_passes_and_records()
    {
        string data = Path.Combine(dir, "data.json");
        File.WriteAllText(data, "[1]");
        Of(data, 1e-3).Write(dir);
        Of(data, 1e-3).CheckAndRecord(dir);
        Assert.Equal(Of(data, 1e-3).Values, RunFingerprint.Read(dir)!.Values);
    }

    [Fact]
    public void Another_learning_rate_is_refused_naming_only_that_key()
    {
        string data = Path.Combine(dir, "data.json");
        File.WriteAllText(data, "[1]");
        Of(data, 1e-3).Write(dir);
        var e = Assert.Throws<ConfigurationException>(() => Of(data, 2e-3).CheckAndRecord(dir));
        Assert.Contains("federation.learning_rate: 0.001 → 0.002", e.Message);
        Assert.DoesNotContain("seed", e.Message);
        Assert.DoesNotContain("data.train", e.Message);
        Assert.Equal(Of(data, 1e-3).Values, RunFingerprint.Read(dir)!.Values); // the recorded one is kept
    }

    [Fact]
    public void Changed_data_content_under_the_same_path_is_refused()
    {
        string data = Path.Combine(dir, "data.json");
        File.WriteAllText(data, "[1]");
        Of(data, 1e-3).Write(dir);
        File.WriteAllText(data, "[2]");
        var e = Assert.Throws<ConfigurationException>(() => Of(data, 1e-3).CheckAndRecord(dir));
        Assert.Contains("data.train_sha256", e.Message);
    }

    [Fact]
    public void A_run_folder_without_a_fingerprint_is_resumed_and_gets_one()
    {
        string data = Path.Combine(dir, "data.json");
        File.WriteAllText(data, "[1]");
        Assert.Null(RunFingerprint.Read(dir));
        Of(data, 1e-3).CheckAndRecord(dir);
        Assert.NotNull(RunFingerprint.Read(dir));
    }
}

/// <summary>The federated run (simulate and server) records its fingerprint per algorithm and refuses a mismatched resume.</summary>
public sealed class FederatedRunFingerprintTests
{
    [Fact]
    public async Task A_federated_run_resumed_with_another_learning_rate_is_refused()
    {
        // Prepare: one committed round of a tiny run.
        using var tiny = new FedLlm.Tests.Network.TinyFederation(clients: 2, rounds: 1, localSteps: 1);
        RunOptions Options(double learningRate, int rounds) => new()
        {
            ModelPath = tiny.ModelDirectory,
            Threads = 1,
            Data = new RunDataOptions { TrainPath = tiny.DataFiles[1], Partition = new() { Kind = FedLlm.Data.Partitioning.PartitionKind.Iid } },
            Federation = tiny.Federation.ToOptions() with { Rounds = rounds, LearningRate = learningRate, MinLearningRate = learningRate / 10 },
            Lora = tiny.Lora,
            Output = tiny.Output,
        };
        using (var first = FederatedRun.Prepare(Options(2e-2, rounds: 1))) await first.RunAsync("fedavg");
        Assert.NotNull(RunFingerprint.Read(Path.Combine(tiny.Output, "fedavg")));

        // Execute and assert: another learning rate is refused, naming the key; the same settings resume.
        using (var other = FederatedRun.Prepare(Options(5e-2, rounds: 1)))
        {
            var e = await Assert.ThrowsAsync<ConfigurationException>(() => other.RunAsync("fedavg", resume: true));
            Assert.Contains("run.federation.learning_rate: 0.02 → 0.05", e.Message);
        }
        using (var same = FederatedRun.Prepare(Options(2e-2, rounds: 1)))
        {
            await same.RunAsync("fedavg", resume: true);
            Assert.True(same.Resumed);
        }
    }
}

/// <summary>results.json names the robust rule, what it did each round, and the simulated attack.</summary>
public sealed class ResultsReportRobustnessTests
{
    [Fact]
    public async Task Results_name_the_attackers_and_show_krum_leaving_the_sign_flipper_out()
    {
        using var tiny = new FedLlm.Tests.Network.TinyFederation(clients: 4, rounds: 2, localSteps: 1);
        var options = new RunOptions
        {
            ModelPath = tiny.ModelDirectory,
            Threads = 1,
            Data = new RunDataOptions { TrainPath = tiny.DataFiles[1], Partition = new() { Kind = FedLlm.Data.Partitioning.PartitionKind.Iid } },
            Federation = tiny.Federation.ToOptions() with { Rounds = 2 },
            Lora = tiny.Lora,
            Output = tiny.Output,
            Robust = new FedLlm.Federation.Robust.RobustOptions { Rule = FedLlm.Federation.Robust.RobustRule.Krum },
            Attack = new FedLlm.Federation.Attacks.AttackOptions { Kind = FedLlm.Federation.Attacks.AttackKind.SignFlip, Fraction = 0.25 },
        };
        using var run = FederatedRun.Prepare(options);
        var outcome = await run.RunAsync("fedavg");
        ResultsReport.Write(tiny.Output, [outcome], run.Labels, options.Federation.Seed);

        var attacker = FedLlm.Federation.Simulation.InProcessClients.ClientId(Assert.Single(RunData.AttackersOf(options)));
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(tiny.Output, "results.json")));
        var result = json.RootElement.GetProperty("runs")[0];
        Assert.Equal("krum", result.GetProperty("robust_rule").GetString());
        Assert.Equal("sign-flip", result.GetProperty("attack").GetProperty("kind").GetString());
        Assert.Equal(attacker, Assert.Single(result.GetProperty("attack").GetProperty("attackers").EnumerateArray()).GetString());
        foreach (var round in result.GetProperty("rounds").EnumerateArray())
        {
            var weights = round.GetProperty("robust").GetProperty("client_weights");
            Assert.Equal(4, weights.EnumerateObject().Count());
            Assert.Equal(0, weights.GetProperty(attacker).GetDouble()); // a reflected update is the farthest from the rest
            Assert.Equal(1, weights.EnumerateObject().Sum(p => p.Value.GetDouble()), 12);
        }
    }

    [Fact]
    public async Task Results_show_flame_clustering_the_sign_flipper_out_and_its_noise_repeating_with_the_seed()
    {
        using var tiny = new FedLlm.Tests.Network.TinyFederation(clients: 4, rounds: 2, localSteps: 1);
        RunOptions Options(string output) => new()
        {
            ModelPath = tiny.ModelDirectory,
            Threads = 1,
            Data = new RunDataOptions { TrainPath = tiny.DataFiles[1], Partition = new() { Kind = FedLlm.Data.Partitioning.PartitionKind.Iid } },
            Federation = tiny.Federation.ToOptions() with { Rounds = 2 },
            Lora = tiny.Lora,
            Output = output,
            Robust = new FedLlm.Federation.Robust.RobustOptions { Rule = FedLlm.Federation.Robust.RobustRule.Flame, FlameNoiseLambda = 0.01 },
            Attack = new FedLlm.Federation.Attacks.AttackOptions { Kind = FedLlm.Federation.Attacks.AttackKind.SignFlip, Fraction = 0.25 },
        };
        var options = Options(tiny.Output);
        using (var run = FederatedRun.Prepare(options))
        {
            var outcome = await run.RunAsync("fedavg");
            ResultsReport.Write(tiny.Output, [outcome], run.Labels, options.Federation.Seed);
        }

        var attacker = FedLlm.Federation.Simulation.InProcessClients.ClientId(Assert.Single(RunData.AttackersOf(options)));
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(tiny.Output, "results.json")));
        var result = json.RootElement.GetProperty("runs")[0];
        Assert.Equal("flame", result.GetProperty("robust_rule").GetString());
        foreach (var round in result.GetProperty("rounds").EnumerateArray())
        {
            var robust = round.GetProperty("robust");
            var weights = robust.GetProperty("client_weights");
            // min_cluster_size ⌊4/2⌋ + 1 = 3: the three honest clients, whose updates share a direction, are the cluster;
            // the reflected update points away from all of them.
            Assert.Equal(0, weights.GetProperty(attacker).GetDouble());
            foreach (var client in weights.EnumerateObject().Where(p => p.Name != attacker))
                Assert.Equal(1 / 3.0, client.Value.GetDouble(), 12);
            Assert.Equal("clip_scale", robust.GetProperty("score_name").GetString());
        }

        // The noise comes from the run seed: a second run in another folder ends with the same adapter, bit for bit.
        string again = Path.Combine(tiny.Output, "again");
        using (var run = FederatedRun.Prepare(Options(again)))
            await run.RunAsync("fedavg");
        foreach (var file in new[] { "adapter_model.safetensors" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(tiny.Output, "fedavg", "adapter", file)), File.ReadAllBytes(Path.Combine(again, "fedavg", "adapter", file)));
    }
}
