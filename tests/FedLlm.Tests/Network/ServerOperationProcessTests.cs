using System.Text.RegularExpressions;
using FedLlm.Federation;
using FedLlm.Federation.Transfer;
using FedLlm.Network;
using FedLlm.Network.Client;
using FedLlm.Network.Protocol;
using FedLlm.Security;
using FedLlm.Tests.Federation;
using Grpc.Core;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FedLlm.Tests.Network;

/// <summary>
/// The server as an operator runs it, in real processes on 127.0.0.1: stopped with SIGTERM and started again, facing
/// clients whose updates are refused round after round, and clients that can never get in.
/// </summary>
public class ServerOperationProcessTests(ITestOutputHelper output)
{
    static readonly TimeSpan Patience = TimeSpan.FromSeconds(240);

    static string Address(CliProcess server) => server.WaitFor(@"listening on (https?://127\.0\.0\.1:\d+)", Patience).Groups[1].Value;

    [Fact]
    public void SIGTERM_stops_a_server_waiting_for_clients_at_once_with_exit_code_0()
    {
        using var run = new TinyFederation(clients: 2, rounds: 2);
        using var server = run.StartServer(run.WriteServerYaml());
        Address(server);
        server.WaitFor(@"round 1 open", Patience);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        server.Terminate();
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
        output.WriteLine($"idle server exited {clock.Elapsed.TotalSeconds:F1} s after SIGTERM");
        Assert.Contains("stopping (SIGTERM)", server.Log);
        Assert.Contains("round 1 abandoned: the server is stopping (SIGTERM)", server.Log);
        Assert.Contains("stopped: no round is committed; run the same command to resume", server.Log);
    }

    [Fact]
    public void SIGTERM_mid_round_abandons_it_exits_0_and_the_same_command_resumes_to_the_uninterrupted_result()
    {
        // Kept optimizer moments: a client that already answered the abandoned round must train it again from the state
        // before it, or the resumed run would drift from the uninterrupted one.
        using var run = new TinyFederation(clients: 3, strategy: "fedavg", rounds: 4, localSteps: 20, keepOptimizerState: true);
        string yaml = run.WriteServerYaml(port: TinyFederation.FreePort(), extraServer: "  stop_grace_seconds: 0");
        var server = run.StartServer(yaml);
        string address = Address(server);
        var clients = Enumerable.Range(0, 3).Select(c => run.StartClient(c, address)).ToList();
        try
        {
            clients[0].WaitFor(@"round 2: client client-0 got its task", Patience);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            server.Terminate();
            Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(30)));
            // The signal is sent once client-0 has its round-2 task; the three tiny clients may finish round 2 before
            // it arrives, so the round that is abandoned is the one open then: K + 1 after K committed rounds.
            var stopped = System.Text.RegularExpressions.Regex.Match(server.Log, @"stopped: rounds 1\.\.(\d+) are committed");
            Assert.True(stopped.Success, "no 'stopped: rounds 1..K are committed' in the server's log");
            int committed = int.Parse(stopped.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            output.WriteLine($"server exited {clock.Elapsed.TotalSeconds:F1} s after SIGTERM, {committed} round(s) committed");
            Assert.InRange(committed, 1, 3);
            Assert.Contains($"round {committed + 1} abandoned: the server is stopping (SIGTERM)", server.Log);
            Assert.Equal(committed, run.Metrics().Count());
            server.Dispose();

            server = run.StartServer(yaml);
            server.WaitFor($@"resumed run \S+ from \S+: rounds 1\.\.{committed} are committed", Patience);
            Assert.Equal(0, server.WaitForExit(Patience));
            foreach (var client in clients) Assert.Equal(0, client.WaitForExit(Patience));
            // Whether a client hears "stopping" or finds the server gone depends on whether it was polling or training.
        }
        finally
        {
            server.Dispose();
            foreach (var client in clients) client.Dispose();
        }
        Assert.Equal(new[] { 0, 1, 2, 3 }, run.Metrics().Select(r => r.Round));
        FederationTestData.AssertBitEqual(run.Simulate(), run.FinalAdapter(), "stopped and resumed network run vs uninterrupted simulation");
    }

    [Fact]
    public async Task A_NaN_client_and_an_oversized_client_are_refused_at_most_once_a_round_and_the_rounds_carry_a_clean_rounds_bytes()
    {
        // client-0 and client-1 are real client processes; client-2 answers every task with NaN weights, client-3 with an
        // update twice the adapter's size (each tensor sent twice), as the retry storm's clients did.
        const int rounds = 3;
        using var run = new TinyFederation(clients: 4, strategy: "fedavg", rounds: rounds);
        string yaml = run.WriteServerYaml(minUpdates: 2, deadlineSeconds: 120, heartbeatTimeoutSeconds: 30);
        using var server = run.StartServer(yaml);
        string address = Address(server);
        var honest = Enumerable.Range(0, 2).Select(c => run.StartClient(c, address)).ToList();
        using var stop = new CancellationTokenSource(Patience);
        var fingerprint = ModelFingerprint.Of(run.ModelDirectory);
        var nan = Task.Run(() => HostileAsync(address, "client-2", fingerprint, global => Poisoned(global), stop.Token));
        var oversized = Task.Run(() => HostileAsync(address, "client-3", fingerprint, global => (AdapterTensors.Clone(global), true), stop.Token));
        try
        {
            Assert.Equal(0, server.WaitForExit(Patience));
            foreach (var client in honest) Assert.Equal(0, client.WaitForExit(Patience));
        }
        finally
        {
            foreach (var client in honest) client.Dispose();
        }
        var submissions = new[] { await nan, await oversized };

        var refusals = Regex.Matches(server.Log, @"round (\d+): rejected update from client (client-\d)")
            .GroupBy(m => (Round: m.Groups[1].Value, Client: m.Groups[2].Value)).ToDictionary(g => g.Key, g => g.Count());
        foreach (var ((round, client), count) in refusals.OrderBy(kv => kv.Key))
            output.WriteLine($"round {round}: {count} refusal(s) of {client}");
        Assert.All(refusals, kv => Assert.True(kv.Value <= 1, $"round {kv.Key.Round}: {kv.Value} refusals of {kv.Key.Client}"));
        Assert.Contains(refusals.Keys, k => k.Client == "client-2");
        Assert.Contains(refusals.Keys, k => k.Client == "client-3");
        Assert.DoesNotContain(refusals.Keys, k => k.Client is "client-0" or "client-1");
        output.WriteLine($"hostile submissions: client-2 {submissions[0]}, client-3 {submissions[1]}");

        var metrics = run.Metrics();
        Assert.Equal(Enumerable.Range(0, rounds), metrics.Select(r => r.Round));
        var final = run.FinalAdapter();
        long adapterBytes = AdapterTensors.Bytes(final);
        // A clean round of four clients: four fetches and four uploads of the adapter, each tensor with its header, as
        // the server counts them (every message's protobuf size).
        var chunks = FedLlm.Network.Transfer.TensorChunks.EncodeAll(final, TransferEncoding.Default);
        long fetch = chunks.Sum(c => (long)c.CalculateSize());
        long upload = chunks.Sum(c => (long)new UpdateChunk { Weights = c }.CalculateSize())
            + new UpdateChunk { Header = new UpdateHeader { Round = 0, ClientId = "client-0", ExampleCount = 10, Metrics = { ["train_loss"] = 1.0 } } }.CalculateSize();
        long clean = 4 * fetch + 4 * upload;
        foreach (var r in metrics)
        {
            Assert.Equal(new[] { "client-0", "client-1" }, r.Clients.Order(StringComparer.Ordinal));
            long wire = r.BytesSent + r.BytesReceived;
            output.WriteLine($"round {r.Round}: {r.BytesSent} bytes sent + {r.BytesReceived} received = {wire}; clean round {clean} (adapter {adapterBytes} in fp32); {r.Seconds:F1} s");
            Assert.True(wire <= clean * 1.10, $"round {r.Round}: {wire} wire bytes, more than 10 % above a clean round's {clean}");
        }
    }

    static (Dictionary<string, Tensor> Weights, bool SendTwice) Poisoned(IReadOnlyDictionary<string, Tensor> global)
    {
        var weights = AdapterTensors.Clone(global);
        var first = weights.Keys.Order(StringComparer.Ordinal).First();
        weights[first].view(-1)[0].fill_(float.NaN);
        return (weights, false);
    }

    /// <summary>A client that answers every task it is given with <paramref name="make"/>'s update, as fast as it can,
    /// until the run finishes or the server goes away; returns how many updates it sent.</summary>
    static async Task<int> HostileAsync(string address, string id, ModelFingerprint fingerprint,
        Func<IReadOnlyDictionary<string, Tensor>, (Dictionary<string, Tensor> Weights, bool SendTwice)> make, CancellationToken cancellationToken)
    {
        var connection = new ServerConnection(address, id, Insecure: true);
        using var channel = connection.Open();
        var api = new FedLlm.Network.Protocol.Federation.FederationClient(channel);
        var join = new JoinRequest { Protocol = ProtocolInfo.Current, ClientId = id, ModelFingerprint = fingerprint.Combined, Task = "sft", ExampleCount = 10 };
        await api.JoinAsync(join, connection.Headers(), cancellationToken: cancellationToken);
        int sent = 0;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                var reply = await api.WaitForTaskAsync(new WaitForTaskRequest { WaitSeconds = 1 }, connection.Headers(), cancellationToken: cancellationToken);
                if (reply.OutcomeCase == WaitForTaskReply.OutcomeOneofCase.Finished) break;
                if (reply.OutcomeCase != WaitForTaskReply.OutcomeOneofCase.Task) continue;
                var global = await NetworkClient.FetchAsync(api.FetchGlobal(new FetchRequest { Round = reply.Task.Round }, connection.Headers(), cancellationToken: cancellationToken), cancellationToken);
                var (weights, twice) = make(global);
                AdapterTensors.Dispose(global);
                try
                {
                    if (twice) await SubmitTwiceAsync(api, connection, reply.Task.Round, id, weights, cancellationToken);
                    else await NetworkClient.SubmitAsync(api, connection, reply.Task.Round, new ClientUpdate(id, weights, 10), TransferEncoding.Default, cancellationToken);
                }
                finally
                {
                    AdapterTensors.Dispose(weights);
                }
                sent++;
            }
        }
        catch (RpcException) when (!cancellationToken.IsCancellationRequested)
        {
            // The server has exited.
        }
        return sent;
    }

    /// <summary>An update twice the adapter's size: every tensor's chunks, then all of them again.</summary>
    static async Task SubmitTwiceAsync(FedLlm.Network.Protocol.Federation.FederationClient api, ServerConnection connection, int round, string id,
        IReadOnlyDictionary<string, Tensor> weights, CancellationToken cancellationToken)
    {
        using var call = api.SubmitUpdate(connection.Headers(), cancellationToken: cancellationToken);
        try
        {
            await call.RequestStream.WriteAsync(new UpdateChunk { Header = new UpdateHeader { Round = round, ClientId = id, ExampleCount = 10 } }, cancellationToken);
            for (int copy = 0; copy < 2; copy++)
                foreach (var chunk in FedLlm.Network.Transfer.TensorChunks.EncodeAll(weights, TransferEncoding.Default))
                    await call.RequestStream.WriteAsync(new UpdateChunk { Weights = chunk }, cancellationToken);
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException or IOException)
        {
            // Refused mid-stream: the reply says why.
        }
        await call.ResponseAsync;
    }

    [Fact]
    public void A_client_whose_kit_comes_from_another_CA_exits_2_with_the_reason_in_one_line()
    {
        using var run = new TinyFederation(clients: 2, rounds: 1, tls: true);
        using var server = run.StartServer(run.WriteServerYaml());
        string address = Address(server);
        using var other = new Data.TempDirectory();
        ProvisioningKit.Create(other.Path, new[] { "127.0.0.1" }, run.Roster, "https://127.0.0.1:50051");
        string yaml = File.ReadAllText(run.WriteClientYaml(0)).Replace(Path.Combine(run.Root, "kit"), other.Path);
        Assert.Contains(other.Path, yaml);
        File.WriteAllText(Path.Combine(run.Root, "stranger.yaml"), yaml);
        using var stranger = new CliProcess("stranger", run.Root, "client", "--server", address, "--config", Path.Combine(run.Root, "stranger.yaml"));
        Assert.Equal(2, stranger.WaitForExit(Patience));
        // The whole kit is another federation's: its ca.crt refuses our server before the server can refuse its certificate.
        var line = Assert.Single(stranger.Lines, l => l.Contains("client client-0:") && l.Contains("certificate"));
        output.WriteLine(line);
        Assert.Contains("this client refused the server's certificate", line);
        Assert.Contains("was not issued by this federation's CA", line);
        Assert.Contains("the kit comes from the server's `fedllm certs`", line);
        output.WriteLine(server.WaitFor(@"refused (certificate|handshake) from 127\.0\.0\.1: .*", TimeSpan.FromSeconds(30)).Value);
        server.Kill();
    }
}
