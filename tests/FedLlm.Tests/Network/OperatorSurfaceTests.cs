using FedLlm.Federation;
using FedLlm.Network;
using FedLlm.Network.Client;
using FedLlm.Network.Protocol;
using FedLlm.Network.Server;
using FedLlm.Peft;
using FedLlm.Tests.Data;
using Grpc.Health.V1;
using static FedLlm.Tests.Federation.FederationTestData;

namespace FedLlm.Tests.Network;

/// <summary>What an operator reads: metrics, health, status, the base-model fingerprint, a graceful stop.</summary>
public class OperatorSurfaceTests
{
    [Fact]
    public async Task Prometheus_metrics_count_rounds_bytes_and_refusals_and_the_gRPC_health_service_answers_serving()
    {
        var metrics = new ServerMetrics();
        var options = new RemoteClientsOptions { Roster = new[] { "a", "b" }, MinUpdates = 1, HeartbeatTimeout = TimeSpan.FromSeconds(60) };
        using var clients = new RemoteClients(options, new HostileUpdateTests.RecordingLogger(), metrics: metrics);
        metrics.TrackConnected(clients.ConnectedCount);
        var run = new RunDescription("run-metrics", HostileUpdateTests.Base, new LoraOptions { Rank = 1 }, new FederationOptions { Rounds = 1, TotalClients = 2 },
            new FedLlm.Runs.LocalObjective());
        int metricsPort = TinyFederation.FreePort();
        await using var host = await FederationHost.StartAsync("127.0.0.1:0", null, clients, run, new InsecureClaimedIdentity(), () => (0, null),
            extras: new FederationHostExtras { Metrics = metrics, MetricsListen = $"127.0.0.1:{metricsPort}" });
        var round = clients.TrainRoundAsync(0, new[] { 0, 1 }, Adapter(X0), new ClientInstructions(0, 0.1));
        var nan = (double[])X0.Clone();
        nan[0] = double.NaN;
        foreach (var (id, values) in new[] { ("b", nan), ("a", X0) })
        {
            var connection = new ServerConnection(host.Address, id, Insecure: true);
            using var channel = connection.Open();
            await NetworkClient.SubmitAsync(new FedLlm.Network.Protocol.Federation.FederationClient(channel), connection, 0,
                new ClientUpdate(id, Adapter(values), 5), FedLlm.Federation.Transfer.TransferEncoding.Default, default);
        }
        var updates = await round.WaitAsync(TimeSpan.FromSeconds(30));
        foreach (var u in updates) AdapterTensors.Dispose(u.Weights);

        using var http = new HttpClient();
        string text = await http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics");
        Assert.Contains("fedllm_rounds_closed_total 1", text);
        Assert.Contains("fedllm_refusals_total{kind=\"update\"} 1", text);
        Assert.Contains("fedllm_clients_connected 2", text);
        Assert.Matches(@"fedllm_bytes_received_total [1-9]", text);
        Assert.Contains("fedllm_round_seconds_count 1", text);

        using var grpc = new ServerConnection(host.Address, "a", Insecure: true).Open();
        var health = await new Health.HealthClient(grpc).CheckAsync(new HealthCheckRequest());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
    }

    [Fact]
    public async Task A_stop_lets_the_open_round_finish_within_the_grace_period_and_opens_no_new_round()
    {
        var options = new RemoteClientsOptions { Roster = new[] { "a" }, MinUpdates = 1, StopGrace = TimeSpan.FromSeconds(30) };
        using var clients = new RemoteClients(options, new HostileUpdateTests.RecordingLogger());
        var run = new RunDescription("run-stop", HostileUpdateTests.Base, new LoraOptions { Rank = 1 }, new FederationOptions { Rounds = 2, TotalClients = 1 },
            new FedLlm.Runs.LocalObjective());
        await using var host = await FederationHost.StartAsync("127.0.0.1:0", null, clients, run, new InsecureClaimedIdentity(), () => (0, null));
        var connection = new ServerConnection(host.Address, "a", Insecure: true);
        using var channel = connection.Open();
        var api = new FedLlm.Network.Protocol.Federation.FederationClient(channel);
        await api.JoinAsync(new JoinRequest { Protocol = ProtocolInfo.Current, ClientId = "a", ModelFingerprint = HostileUpdateTests.Base.Combined, ExampleCount = 5 },
            connection.Headers());
        var round = clients.TrainRoundAsync(0, new[] { 0 }, Adapter(X0), new ClientInstructions(0, 0.1));
        Assert.Equal(0, (await api.WaitForTaskAsync(new WaitForTaskRequest { WaitSeconds = 5 }, connection.Headers())).Task.Round);
        Assert.True(clients.BeginStop("test", abandonRound: false));
        // The client holding the task finishes it: the round closes normally and can be committed.
        Assert.True((await NetworkClient.SubmitAsync(api, connection, 0, new ClientUpdate("a", Adapter(X0), 5),
            FedLlm.Federation.Transfer.TransferEncoding.Default, default)).Accepted);
        var updates = await round.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Single(updates);
        foreach (var u in updates) AdapterTensors.Dispose(u.Weights);
        var poll = await api.WaitForTaskAsync(new WaitForTaskRequest { WaitSeconds = 5 }, connection.Headers());
        Assert.Equal("test", poll.Stopping.Reason);
        await Assert.ThrowsAsync<ServerStoppingException>(() => clients.TrainRoundAsync(1, new[] { 0 }, Adapter(X0), new ClientInstructions(1, 0.1)));
    }

    [Fact]
    public void The_base_model_fingerprint_covers_the_weights_is_cached_and_names_the_file_that_differs()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), "{\"hidden_size\": 32}");
        File.WriteAllBytes(Path.Combine(dir.Path, "model.safetensors"), Enumerable.Range(0, 4096).Select(i => (byte)i).ToArray());
        var server = ModelFingerprint.Of(dir.Path);
        Assert.Equal(new[] { "config.json", "model.safetensors" }, server.Files.Keys);
        Assert.True(File.Exists(Path.Combine(dir.Path, ModelFingerprint.CacheFileName)));
        Assert.Equal(server.Combined, ModelFingerprint.Of(dir.Path).Combined);

        // Same config, other weights (the ×1.5 case): the cache sees the new size and time, and the weights hash differs.
        File.WriteAllBytes(Path.Combine(dir.Path, "model.safetensors"), Enumerable.Range(0, 4096).Select(i => (byte)(i * 3 / 2)).ToArray());
        File.SetLastWriteTimeUtc(Path.Combine(dir.Path, "model.safetensors"), DateTime.UtcNow.AddMinutes(1));
        var client = ModelFingerprint.Of(dir.Path);
        Assert.NotEqual(server.Combined, client.Combined);
        string difference = server.Differences(client.Files);
        Assert.Contains("model.safetensors differs", difference);
        Assert.DoesNotContain("config.json", difference);
    }

    [Fact]
    public void Status_fits_80_columns_and_reads_the_last_round_as_words()
    {
        var reply = new StatusReply
        {
            RunId = "run-20261206-211309-e5ed8174", Round = 3, TotalRounds = 10, RoundOpen = true, UpdatesThisRound = 1,
            // The server sends the last metrics.jsonl line as written: snake_case, rounds numbered 1 … R.
            LastMetrics = """{"round":3,"learning_rate":0.002,"clients":["alice","bob"],"client_loss":{"alice":1.25,"bob":1.75},"update_norms":{},"global_step_norm":0.1,"eval_loss":1.4,"bytes_sent":64000000,"bytes_received":64100000,"seconds":42.5}""",
        };
        reply.Clients.Add(new ClientStatus { ClientId = "alice", Connected = true, SecondsSinceSeen = 1.2, AcceptedUpdates = 3, State = "submitted" });
        reply.Clients.Add(new ClientStatus { ClientId = "a-client-with-a-very-long-identifier", SecondsSinceSeen = -1, RejectedUpdates = 2, State = "backing off" });
        var lines = StatusReport.Lines(reply);
        Assert.All(lines, l => Assert.True(l.Length <= 80, $"{l.Length} columns: {l}"));
        // reply.Round is the wire's 0-based index of the open round.
        Assert.Contains("round 4 of 10 open: 1 updates so far", lines);
        Assert.Contains(lines, l => l.StartsWith("last committed round 3: 2 clients", StringComparison.Ordinal));
        Assert.Contains("  mean train loss 1.5000, held-out loss 1.4000", lines);
        Assert.Contains("  64.0 MB sent, 64.1 MB received", lines);
    }

    [Fact]
    public void Status_shows_the_privacy_spent_and_the_secure_aggregation_of_the_last_round()
    {
        var record = MetricsJsonl.ParseLine("""{"round":2,"learning_rate":0.002,"clients":["alice"],"client_loss":{"alice":1.25},"update_norms":{},"global_step_norm":0.1,"bytes_sent":1,"bytes_received":1,"seconds":1}""") with
        {
            Privacy = new RoundPrivacy(1.2345678, 1e-5, 1.09, 0.5),
            SecureAggregation = new RoundSecureAggregation(4, 1, 3, null, 20, 1.0, 1000, 0.5),
        };
        var reply = new StatusReply { RunId = "r", Round = 2, TotalRounds = 3, LastMetrics = MetricsJsonl.Line(record) };
        var lines = StatusReport.Lines(reply);
        Assert.All(lines, l => Assert.True(l.Length <= 80, $"{l.Length} columns: {l}"));
        Assert.Contains("  privacy spent: ε 1.235 at δ 1e-05 (σ 1.09, q 0.5)", lines);
        Assert.Contains("  secure aggregation (SecAgg, threshold 3): 4 inputs summed, 1 dropped", lines);

        var unbounded = reply.Clone();
        unbounded.LastMetrics = MetricsJsonl.Line(record with { Privacy = new RoundPrivacy(null, 1e-5, 0, 1), SecureAggregation = null });
        var plain = StatusReport.Lines(unbounded);
        Assert.Contains("  privacy spent: ε unbounded (no noise) at δ 1e-05 (σ 0, q 1)", plain);
        Assert.DoesNotContain(plain, l => l.Contains("secure aggregation", StringComparison.Ordinal));
    }

    [Fact]
    public void Status_shows_who_the_robust_rule_left_out_within_80_columns()
    {
        var record = MetricsJsonl.ParseLine("""{"round":2,"learning_rate":0.002,"clients":["alice"],"client_loss":{"alice":1.25},"update_norms":{},"global_step_norm":0.1,"bytes_sent":1,"bytes_received":1,"seconds":1}""");
        var weights = Enumerable.Range(0, 12).ToDictionary(i => $"hospital-{i:00}", i => i is 3 or 7 ? 0.0 : 0.1);
        var reply = new StatusReply { RunId = "r", Round = 2, TotalRounds = 3, LastMetrics = MetricsJsonl.Line(record with { Robust = new RoundRobust("multi-krum", weights, "krum_score", null) }) };
        var lines = StatusReport.Lines(reply);
        Assert.All(lines, l => Assert.True(l.Length <= 80, $"{l.Length} columns: {l}"));
        Assert.Contains("  robust aggregation (multi-krum): left out hospital-03, hospital-07", lines);
        string shares = string.Join(" ", lines.SkipWhile(l => !l.StartsWith("    shares:", StringComparison.Ordinal)).Select(l => l.Trim()));
        foreach (var (id, w) in weights) Assert.Contains(id + " " + (w == 0 ? "0" : "0.1"), shares);

        reply.LastMetrics = MetricsJsonl.Line(record with { Robust = new RoundRobust("median", null, null, null) });
        Assert.Contains("  robust aggregation (median): coordinate-wise, no per-client weights", StatusReport.Lines(reply));
    }

    [Fact]
    public void The_example_configs_load_and_bound_example_counts_and_norms()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(root.FullName, "FedLlm.sln"))) root = root.Parent!;
        string folder = Path.Combine(root.FullName, "examples", "federation");
        var server = ServerConfig.Load(Path.Combine(folder, "server.yaml"));
        var options = server.Server.ToOptions();
        options.Validate();
        Assert.True(options.Limits.MaxExampleCount < long.MaxValue, "the example server leaves example counts unbounded");
        Assert.NotNull(options.MaxUpdateNormRatio);
        Assert.NotNull(server.Server.MetricsListen);
        foreach (var name in new[] { "alice", "bob", "carol" })
            Assert.Equal("certificate", ClientConfig.Load(Path.Combine(folder, $"{name}.yaml")).Auth);
    }

    [Fact]
    public void Client_yaml_reads_a_declared_lora_rank_and_refuses_an_unknown_key()
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "client.yaml");
        File.WriteAllText(path, "client_id: alice\nlora_rank: 4\n");
        Assert.Equal(4, ClientConfig.Load(path).LoraRank);
        File.WriteAllText(path, "client_id: alice\nlora_rnak: 4\n");
        Assert.Contains("lora_rnak", Assert.ThrowsAny<Exception>(() => ClientConfig.Load(path)).Message);
    }
}
