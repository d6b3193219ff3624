using FedLlm.Federation;

namespace FedLlm.Tests.Network;

/// <summary>
/// FedBuff over real processes on 127.0.0.1: `fedllm server` with an async: section and `fedllm client`s, one of them
/// slowed by the hidden --test-step-delay, so its updates arrive after the fast clients have moved the global on.
/// </summary>
public class AsyncFederationProcessTests(Xunit.Abstractions.ITestOutputHelper output)
{
    static readonly TimeSpan Patience = TimeSpan.FromSeconds(240);
    const int Versions = 10;

    static string Address(CliProcess server) => server.WaitFor(@"listening on (https?://127\.0\.0\.1:\d+)", Patience).Groups[1].Value;

    static string AsyncYaml(TinyFederation run, int port = 0) =>
        run.WriteServerYaml(port: port, heartbeatSeconds: 0.5, heartbeatTimeoutSeconds: 8, extraServer: "async:\n  buffer_size: 2\n  staleness: polynomial");

    /// <summary>client-0 pauses 600 ms per local step, the others 50 ms: every client is slowed a little so a version
    /// takes long enough on any machine for the slow client's first update to arrive before the run ends.</summary>
    static CliProcess StartClient(TinyFederation run, int client, string address) =>
        new($"client-{client}", run.Root, "client", "--server", address, "--config", run.WriteClientYaml(client), "--insecure",
            "--test-step-delay", client == 0 ? "600" : "50");

    static void AssertStalenessWeights(IReadOnlyList<RoundRecord> versions)
    {
        foreach (var v in versions)
        {
            var updates = v.Async!.Updates;
            Assert.Equal(2, updates.Count);
            Assert.Equal(2, v.Async.BufferSize);
            Assert.Equal("polynomial", v.Async.Staleness);
            foreach (var u in updates)
            {
                // τ = the version collected minus the version the update was trained from; s(τ) = 1/√(1+τ).
                Assert.Equal(v.Round - u.BaseVersion, u.Staleness);
                Assert.Equal(1 / Math.Sqrt(1 + u.Staleness), u.Weight, 12);
                Assert.True(double.IsFinite(u.TrainLoss) && double.IsFinite(u.DeltaNorm) && u.DeltaNorm > 0, $"version {v.Number}: {u}");
            }
        }
    }

    [Fact]
    public void Three_clients_with_one_slowed_complete_every_version_and_the_slow_clients_stale_updates_weigh_less()
    {
        using var run = new TinyFederation(clients: 3, strategy: "fedbuff", rounds: Versions);
        using var server = run.StartServer(AsyncYaml(run));
        string address = Address(server);
        var clients = Enumerable.Range(0, 3).Select(c => StartClient(run, c, address)).ToList();
        try
        {
            Assert.Equal(0, server.WaitForExit(Patience));
            foreach (var client in clients) Assert.Equal(0, client.WaitForExit(Patience));
        }
        finally
        {
            foreach (var client in clients) client.Dispose();
        }

        var versions = run.Metrics();
        foreach (var v in versions)
            output.WriteLine($"version {v.Number}: " + string.Join("; ", v.Async!.Updates.Select(u =>
                $"{u.Client} from v{u.BaseVersion} τ={u.Staleness} s={u.Weight:F4} ‖Δ‖={u.DeltaNorm:F4}")) + $"; step ‖Δx‖={v.GlobalStepNorm:F4}");
        Assert.Equal(Enumerable.Range(0, Versions), versions.Select(v => v.Round));
        AssertStalenessWeights(versions);
        var slow = versions.SelectMany(v => v.Async!.Updates).Where(u => u.Client == "client-0").ToList();
        Assert.NotEmpty(slow);
        Assert.Contains(slow, u => u.Staleness >= 1 && u.Weight < 1);
        // The fast clients carry most versions: the slow one cannot be in all of them.
        Assert.True(slow.Count < Versions, $"client-0 is in {slow.Count} of {Versions} versions");
        var final = run.FinalAdapter();
        Assert.All(final.Values, t => Assert.True(t.isfinite().all().item<bool>()));
        Assert.Contains(final.Values, t => t.abs().sum().item<float>() > 0);
        Assert.True(File.Exists(Path.Combine(run.Output, "rounds.png")));
        Assert.Contains("version 1 committed: updates from", server.Log);
    }

    [Fact]
    public void A_server_killed_mid_run_resumes_from_the_last_committed_version_and_completes_the_run()
    {
        using var run = new TinyFederation(clients: 3, strategy: "fedbuff", rounds: Versions);
        string yaml = AsyncYaml(run, port: TinyFederation.FreePort());
        var server = run.StartServer(yaml);
        string address = Address(server);
        var clients = Enumerable.Range(0, 3).Select(c => StartClient(run, c, address)).ToList();
        try
        {
            server.WaitFor(@"version 3 committed", Patience);
            server.Kill(); // kill -9: the buffered updates of the version being collected are lost
            var committed = run.Metrics();
            Assert.True(committed.Count >= 3, $"{committed.Count} versions committed before the kill");
            server.Dispose();
            server = run.StartServer(yaml);
            var resumed = server.WaitFor(@"resumed run \S+ from \S+: rounds 1\.\.(\d+) are committed", Patience);
            // metrics.jsonl is rewritten just after state-N is renamed into place, so a kill between the two may resume one later.
            Assert.InRange(int.Parse(resumed.Groups[1].Value), committed.Count, committed.Count + 1);
            Assert.Equal(0, server.WaitForExit(Patience));
            foreach (var client in clients) Assert.Equal(0, client.WaitForExit(Patience));

            var final = run.Metrics();
            Assert.Equal(Enumerable.Range(0, Versions), final.Select(v => v.Round));
            for (int v = 0; v < committed.Count; v++)
                Assert.Equal(committed[v].Async!.Updates.Select(u => (u.Client, u.BaseVersion)), final[v].Async!.Updates.Select(u => (u.Client, u.BaseVersion)));
            AssertStalenessWeights(final);
            Assert.All(run.FinalAdapter().Values, t => Assert.True(t.isfinite().all().item<bool>()));
        }
        finally
        {
            server.Dispose();
            foreach (var client in clients) client.Dispose();
        }
    }
}
