using System.Collections.Concurrent;
using FedLlm.Federation;
using FedLlm.Federation.SecureAggregation;
using FedLlm.Network;
using FedLlm.Network.Server;
using FedLlm.Tests.Federation;
using static TorchSharp.torch;

namespace FedLlm.Tests.Network;

/// <summary>
/// Secure aggregation over the real federation: `fedllm client` processes answer secure rounds through the four
/// SecAggExchange phases, and the server unmasks only their sum. Drop-outs are real: a client process kills itself
/// (SIGKILL) just before sending a phase's message (FEDLLM_FAULT_SECAGG_KILL_BEFORE), which no log line could time.
/// </summary>
public class SecureAggregationProcessTests
{
    static readonly TimeSpan Patience = TimeSpan.FromSeconds(240);

    static string Address(CliProcess server) => server.WaitFor(@"listening on (https?://127\.0\.0\.1:\d+)", Patience).Groups[1].Value;

    /// <summary>max_weight 9 (the largest client holds 9 examples) weights client i by n_i/9, so the secure mean is
    /// FedAvg's example-weighted mean up to quantisation.</summary>
    static readonly SecureAggregationOptions Secure = new() { MaxWeight = 9 };

    const string SecureYaml = "secure_aggregation:\n  enabled: true\n  max_weight: 9";

    [Fact]
    public async Task Three_client_processes_with_secure_aggregation_end_bit_identical_to_the_simulation_and_the_server_sees_only_masked_inputs()
    {
        // Bit-identical, not just within the quantisation error: both sides quantise the same updates deterministically
        // (round to nearest), the masks cancel exactly in Z_2^32, and both decode the same sum with the same code
        // (SecureAggregationClients.AggregateOf). Only the masks' randomness differs, and it cancels.
        using var run = new TinyFederation(clients: 3, strategy: "fedavg", rounds: 2);
        var received = new ConcurrentBag<(string Client, MaskedInput Input)>();
        var sessions = new SecAggSessions { Observer = (id, m) => { if (m.Message is MaskedInput input) received.Add((id, input)); } };
        var config = ServerConfig.Load(run.WriteServerYaml(extraServer: SecureYaml));
        var listening = new TaskCompletionSource<string>();
        using var loggers = FedLlmLogging.CreateFactory();
        var server = Task.Run(() => ServerProcess.RunAsync(config, null, loggers, a => listening.TrySetResult(a), secAgg: sessions));
        string address = await await Task.WhenAny(listening.Task, server.ContinueWith(t => t.IsFaulted ? throw t.Exception! : "server ended before listening"));
        var clients = Enumerable.Range(0, 3).Select(c => run.StartClient(c, address)).ToList();
        try
        {
            Assert.Equal(0, await server.WaitAsync(Patience));
            foreach (var client in clients) Assert.Equal(0, client.WaitForExit(Patience));
        }
        finally
        {
            foreach (var client in clients) client.Dispose();
        }

        var network = run.FinalAdapter();
        FederationTestData.AssertBitEqual(run.Simulate(Secure), network, "secure network vs secure simulation");
        Assert.Contains(network.Values, t => t.abs().sum().item<float>() > 0);
        var rounds = run.Metrics();
        Assert.Equal(new[] { 0, 1 }, rounds.Select(r => r.Round));
        Assert.All(rounds, r => Assert.Equal(3, r.SecureAggregation?.Survivors));
        Assert.All(rounds, r => Assert.Equal(0, r.SecureAggregation?.Dropped));

        // What the server received of each client's update: a masked vector, never the plain quantised input. A plain
        // input has every coordinate below 2^24 (24-bit quantisation) and its weight element n_i/9 · (2^24 − 1); a
        // masked one is uniform over Z_2^32, so about 255/256 of its elements are at or above 2^24.
        Assert.Equal(6, received.Count);
        Assert.Equal(run.Roster, received.Select(r => r.Client).Distinct().Order(StringComparer.Ordinal));
        int length = SecureInput.Length(network);
        foreach (var (client, input) in received)
        {
            Assert.Equal(length, input.Vector.Length);
            double high = input.Vector.Count(x => x >= 1u << 24) / (double)length;
            Assert.True(high > 0.95, $"{client}: {high:P1} of its masked input is ≥ 2^24; a plain 24-bit input has none");
            double mean = input.Vector.Average(x => x / 4294967296.0);
            Assert.InRange(mean, 0.45, 0.55);
        }
    }

    [Fact]
    public void A_client_killed_after_its_masked_input_is_unmasked_from_shares_and_the_sum_holds_all_three_inputs()
    {
        // client-2 sends its masked input and dies before revealing its shares: its input is in the sum, and its self
        // mask is rebuilt from the shares of b_2 that client-0 and client-1 hold (threshold 2 of 3).
        using var run = new TinyFederation(clients: 3, strategy: "fedavg", rounds: 1);
        var network = RunWithKilledClient(run, "unmask");
        var record = Assert.Single(run.Metrics());
        Assert.Equal(3, record.SecureAggregation?.Survivors);
        Assert.Equal(1, record.SecureAggregation?.Dropped);

        // Bit-identical to the simulation with the same dropout, and within the quantisation error of plain FedAvg of
        // all three clients (max_weight 9 makes the secure weights n_i/9, FedAvg's up to quantisation).
        FederationTestData.AssertBitEqual(run.Simulate(Secure, (_, id, phase) => id == "client-2" && phase == SecAggPhase.Unmask), network, "network vs simulated dropout");
        AssertWithinQuantisation(run.Simulate(), network, survivors: 3, weightSum: (5 + 7 + 9) / 9.0);
    }

    [Fact]
    public void A_client_killed_before_its_masked_input_has_its_pairwise_masks_removed_and_the_sum_is_the_survivors_plain_sum()
    {
        // client-2 shares its keys and dies before sending its masked input: the survivors' inputs carry pairwise masks
        // with client-2 that no longer cancel; the server rebuilds s_2^SK from the survivors' shares and removes them.
        using var run = new TinyFederation(clients: 3, strategy: "fedavg", rounds: 1);
        var network = RunWithKilledClient(run, "masked-input");
        var record = Assert.Single(run.Metrics());
        Assert.Equal(2, record.SecureAggregation?.Survivors);
        Assert.Equal(1, record.SecureAggregation?.Dropped);
        FederationTestData.AssertBitEqual(run.Simulate(Secure, (_, id, phase) => id == "client-2" && phase == SecAggPhase.MaskedInput), network, "network vs simulated dropout");

        // The plain FedAvg of client-0 and client-1 alone: the same two clients (same data, roster indices and seeds)
        // in a federation of two.
        using var survivorsOnly = new TinyFederation(clients: 2, strategy: "fedavg", rounds: 1);
        AssertWithinQuantisation(survivorsOnly.Simulate(), network, survivors: 2, weightSum: (5 + 7) / 9.0);
        // The check can fail: the plain mean of all three clients is far outside the bound.
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => AssertWithinQuantisation(run.Simulate(), network, survivors: 2, weightSum: (5 + 7) / 9.0));
    }

    [Fact]
    public void Too_many_clients_dropping_fails_the_round_with_a_message_naming_the_phase_and_the_missing_clients()
    {
        // Threshold 3 of 3: one client dying before its masked input leaves 2, below the threshold.
        using var run = new TinyFederation(clients: 3, strategy: "fedavg", rounds: 1);
        using var server = run.StartServer(run.WriteServerYaml(heartbeatSeconds: 0.5, heartbeatTimeoutSeconds: 3,
            extraServer: "secure_aggregation:\n  enabled: true\n  threshold: 3"));
        string address = Address(server);
        var clients = Enumerable.Range(0, 3).Select(c => run.StartClient(c, address,
            c == 2 ? new Dictionary<string, string> { ["FEDLLM_FAULT_SECAGG_KILL_BEFORE"] = "masked-input" } : null)).ToList();
        try
        {
            Assert.NotEqual(0, server.WaitForExit(Patience));
            Assert.Matches(@"secure aggregation failed in the masked-input phase: .*below threshold 3; missing clients: client-2", server.Log);
        }
        finally
        {
            foreach (var client in clients) client.Dispose();
        }
        Assert.Empty(File.Exists(Path.Combine(run.Output, "metrics.jsonl")) ? run.Metrics() : []);
    }

    [Fact]
    public void Client_side_DP_over_secure_aggregation_on_the_network_ends_bit_identical_to_the_simulation()
    {
        // privacy.mode client-fixed: each client process clips its update before quantising it, the server adds the
        // Gaussian noise to the unmasked sum. With the noise seeded from the run seed, both sides draw the same noise.
        using var run = new TinyFederation(clients: 3, strategy: "fedavg", rounds: 2);
        const string privacyYaml = "privacy:\n  mode: client-fixed\n  clipping_norm: 0.05\n  noise_multiplier: 0.5\n  delta: 1e-3\n  seeding: run-seed";
        using var server = run.StartServer(run.WriteServerYaml(extraServer: "secure_aggregation:\n  enabled: true\n" + privacyYaml));
        string address = Address(server);
        var clients = Enumerable.Range(0, 3).Select(c => run.StartClient(c, address)).ToList();
        try
        {
            Assert.Equal(0, server.WaitForExit(Patience));
            foreach (var client in clients) Assert.Equal(0, client.WaitForExit(Patience));
        }
        finally
        {
            foreach (var client in clients) client.Dispose();
        }
        var privacy = new FedLlm.Privacy.PrivacyOptions
        {
            Mode = FedLlm.Privacy.PrivacyMode.ClientFixed, ClippingNorm = 0.05, NoiseMultiplier = 0.5, Delta = 1e-3, Seeding = FedLlm.Privacy.NoiseSeeding.RunSeed,
        };
        var network = run.FinalAdapter();
        FederationTestData.AssertBitEqual(run.Simulate(new SecureAggregationOptions(), privacy: privacy), network, "secure DP network vs secure DP simulation");
        // The noise is there: without DP the same secure run ends elsewhere.
        var noiseless = run.Simulate(new SecureAggregationOptions());
        Assert.Contains(network.Keys, k => !network[k].allclose(noiseless[k], 0, 0));
        Assert.All(run.Metrics(), r => Assert.True(r.Privacy?.Epsilon is > 0 and < double.PositiveInfinity, $"round {r.Round}: ε {r.Privacy?.Epsilon}"));
        Assert.All(run.Metrics(), r => Assert.Equal(3, r.SecureAggregation?.Survivors));
        // results.json carries the privacy spent and the secure aggregation, as a simulated run's does.
        using var results = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(run.Output, "results.json")));
        var result = results.RootElement.GetProperty("runs")[0];
        Assert.Equal(run.Metrics()[^1].Privacy!.Epsilon, result.GetProperty("privacy").GetProperty("epsilon").GetDouble());
        Assert.Equal(3, result.GetProperty("secure_aggregation").GetProperty("survivors")[0].GetInt32());
    }

    [Theory]
    [InlineData("privacy:\n  mode: server-fixed\n  noise_multiplier: 1\n  delta: 1e-3", "secure_aggregation with privacy.mode server-fixed: the server cannot clip updates it never sees")]
    [InlineData("robust:\n  rule: median", "secure_aggregation hides the individual updates that robust aggregation inspects")]
    [InlineData("", "server.max_update_norm with secure_aggregation: the server never sees an update")]
    public void A_server_yaml_combining_secure_aggregation_with_what_needs_single_updates_is_refused_naming_the_keys(string extra, string expected)
    {
        using var run = new TinyFederation(clients: 3, strategy: "fedavg", rounds: 1);
        string yaml = run.WriteServerYaml(extraServer: "secure_aggregation:\n  enabled: true\n" + extra);
        if (extra.Length == 0) File.WriteAllText(yaml, File.ReadAllText(yaml).Replace("  encoding: fp32", "  encoding: fp32\n  max_update_norm: 10"));
        var error = Assert.Throws<ArgumentException>(() => ServerConfig.Load(yaml).ToRunOptions().Validate(FedLlm.Runs.FederatedRun.DefaultAlgorithms));
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void Status_shows_the_last_rounds_secure_aggregation_within_80_columns()
    {
        var reply = new FedLlm.Network.Protocol.StatusReply
        {
            RunId = "run-20261207-021721-e602f96d", Round = 2, TotalRounds = 2,
            LastMetrics = """{"round":2,"learning_rate":0.002,"clients":["secure-aggregate"],"client_loss":{"secure-aggregate":1.5},"update_norms":{},"global_step_norm":0.1,"bytes_sent":3569760,"bytes_received":3554058,"seconds":36.5,"secure_aggregation":{"survivors":3,"dropped":1,"threshold":2,"neighbours":null,"quantisation_bits":24,"quantisation_range":1,"protocol_bytes":3556881,"protocol_seconds":3.55}}""",
        };
        var lines = FedLlm.Network.Client.StatusReport.Lines(reply);
        Assert.All(lines, l => Assert.True(l.Length <= 80, $"{l.Length} columns: {l}"));
        Assert.Contains("  secure aggregation (SecAgg, threshold 2): 3 inputs summed, 1 dropped", lines);
        Assert.Contains("  secure-aggregation protocol: 3.56 MB in 3.5 s", lines);
    }

    static Dictionary<string, Tensor> RunWithKilledClient(TinyFederation run, string phase)
    {
        using var server = run.StartServer(run.WriteServerYaml(heartbeatSeconds: 0.5, heartbeatTimeoutSeconds: 3, extraServer: SecureYaml));
        string address = Address(server);
        var clients = Enumerable.Range(0, 3).Select(c => run.StartClient(c, address,
            c == 2 ? new Dictionary<string, string> { ["FEDLLM_FAULT_SECAGG_KILL_BEFORE"] = phase } : null)).ToList();
        try
        {
            Assert.Equal(0, server.WaitForExit(Patience));
            Assert.NotEqual(0, clients[2].WaitForExit(Patience));
            Assert.Matches($@"{phase} phase: client-2 missed heartbeats", server.Log);
            foreach (var client in clients.Take(2)) Assert.Equal(0, client.WaitForExit(Patience));
        }
        finally
        {
            foreach (var client in clients) client.Dispose();
        }
        return run.FinalAdapter();
    }

    /// <summary>Each coordinate of the secure mean is off from the plain one by at most n·r/((2^b − 1)·Σw) (SecureInput's
    /// bound, r = 1, b = 24), plus float32 rounding of the adapter; and the two must not be bit-equal by accident of a
    /// dropped input (a client's whole update is orders of magnitude above the bound).</summary>
    static void AssertWithinQuantisation(Dictionary<string, Tensor> plain, Dictionary<string, Tensor> secure, int survivors, double weightSum)
    {
        double bound = survivors * 1.0 / (((1 << 24) - 1) * weightSum);
        foreach (var (name, expected) in plain)
        {
            double error = (secure[name].to(ScalarType.Float64) - expected.to(ScalarType.Float64)).abs().max().item<double>();
            double scale = expected.abs().max().item<float>();
            Assert.True(error <= bound + 2 * scale * 1.2e-7, $"{name}: secure differs from plain by {error:E3}, above the quantisation bound {bound:E3} (+ float32 rounding)");
        }
    }
}
