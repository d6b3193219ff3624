using FedLlm.Federation;
using FedLlm.Federation.Transfer;
using FedLlm.Federation.Validation;
using FedLlm.Network;
using FedLlm.Network.Client;
using FedLlm.Network.Protocol;
using FedLlm.Network.Server;
using FedLlm.Peft;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Network;

/// <summary>
/// The server's asynchronous side (<see cref="RemoteClients"/> as an IAsyncClientPool) over real gRPC on loopback: versions
/// instead of rounds, one task per client and version, the staleness bound refused before the tensors are read with the
/// reason told to the client, the usual screening, and a refused client's next task on the next version.
/// </summary>
public class AsyncRemoteClientsTests
{
    static readonly double[] Honest = { 1.5, -2.0, 0.25, 1.0, 3.0 };

    static async Task JoinAsync(ServerConnection connection)
    {
        using var channel = connection.Open();
        await new FedLlm.Network.Protocol.Federation.FederationClient(channel).JoinAsync(new JoinRequest
        {
            Protocol = ProtocolInfo.Current, ClientId = connection.ClientId, ModelFingerprint = HostileUpdateTests.Base.Combined, Task = "sft", ExampleCount = 100,
        }, connection.Headers());
    }

    static async Task<int?> PollAsync(ServerConnection connection)
    {
        using var channel = connection.Open();
        var reply = await new FedLlm.Network.Protocol.Federation.FederationClient(channel).WaitForTaskAsync(new WaitForTaskRequest { WaitSeconds = 0.3 }, connection.Headers());
        return reply.OutcomeCase == WaitForTaskReply.OutcomeOneofCase.Task ? reply.Task.Round : null;
    }

    static async Task<SubmitReply> SubmitAsync(ServerConnection connection, int version, double[] flat)
    {
        using var channel = connection.Open();
        return await NetworkClient.SubmitAsync(new FedLlm.Network.Protocol.Federation.FederationClient(channel), connection, version,
            new ClientUpdate(connection.ClientId, Adapter(flat), 10), TransferEncoding.Default, default);
    }

    [Fact]
    public async Task Versions_are_handed_once_per_client_too_stale_updates_are_refused_with_the_reason_and_a_refused_client_trains_the_next_version()
    {
        // Prepare: three clients, τ_max = 1, norm bound 10, no refusal backoff (so "next version" is the only wait).
        var options = new RemoteClientsOptions
        {
            Roster = ["a", "b", "c"], Asynchronous = true, MaxStaleness = 1, HeartbeatInterval = TimeSpan.FromMilliseconds(200),
            HeartbeatTimeout = TimeSpan.FromSeconds(5), MaxUpdateBytes = 64 << 10, Limits = new UpdateLimits { MaxUpdateNorm = 10 }, RefusalBackoff = TimeSpan.Zero,
        };
        var log = new HostileUpdateTests.RecordingLogger();
        using var clients = new RemoteClients(options, log);
        var run = new RunDescription("run-test", HostileUpdateTests.Base, new LoraOptions { Rank = 1 },
            new FederationOptions { Rounds = 3, TotalClients = 3, ClientsPerRound = 3 }, new FedLlm.Runs.LocalObjective());
        await using var host = await FederationHost.StartAsync("127.0.0.1:0", null, clients, run, new InsecureClaimedIdentity(), () => (0, null));
        var (a, b, c) = (new ServerConnection(host.Address, "a", Insecure: true), new ServerConnection(host.Address, "b", Insecure: true),
            new ServerConnection(host.Address, "c", Insecure: true));
        foreach (var connection in new[] { a, b, c }) await JoinAsync(connection);
        using (var global = Adapter(X0).AsDisposable()) clients.Publish(0, global.Value, new ClientInstructions(0, 0.1));

        // Execute + Assert: every idle client takes version 0, once.
        Assert.Equal(0, await PollAsync(a));
        Assert.Equal(0, await PollAsync(b));
        Assert.Equal(0, await PollAsync(c));
        Assert.True((await SubmitAsync(a, 0, Honest)).Accepted);
        Assert.Null(await PollAsync(a));
        var far = X0.Select(x => x + 5.0).ToArray(); // ‖y − x‖ = 5·√5 > 10
        var refused = await SubmitAsync(b, 0, far);
        Assert.False(refused.Accepted);
        Assert.Contains("exceeds the bound 10", refused.Reason);

        // The buffered update's delta is taken against the version it was trained from.
        var taken = Assert.Single(await clients.TakeAsync(1));
        Assert.Equal(("a", 0), (taken.ClientId, taken.BaseVersion));
        var delta = Flat(taken.Delta);
        for (int i = 0; i < X0.Length; i++) Assert.Equal(Honest[i] - X0[i], delta[i], 5);
        AdapterTensors.Dispose(taken.Delta);

        // Two aggregations later client c's update of version 0 is 2 versions stale: refused unread, with the reason.
        using (var v1 = Adapter(Honest).AsDisposable()) clients.Publish(1, v1.Value, new ClientInstructions(1, 0.1));
        using (var v2 = Adapter(Honest).AsDisposable()) clients.Publish(2, v2.Value, new ClientInstructions(2, 0.1));
        var stale = await SubmitAsync(c, 0, Honest);
        Assert.False(stale.Accepted);
        Assert.Contains("2 versions stale (async.max_staleness 1)", stale.Reason);
        Assert.Contains("Poll for a task on version 2", stale.Reason);

        // Each client's next task is on the newest version, the refused one included.
        Assert.Equal(2, await PollAsync(c));
        Assert.Equal(2, await PollAsync(b));
        Assert.Equal(2, await PollAsync(a));
        Assert.Equal("training version 2", clients.Status().Clients.Single(s => s.Id == "b").State);
        Assert.Equal([(1, 0), (0, 1), (0, 1)], clients.Status().Clients.Select(s => (s.Accepted, s.Rejected)));
    }

    [Fact]
    public async Task The_norm_ratio_screen_drops_an_outlier_from_the_updates_about_to_be_aggregated_and_waits_for_another()
    {
        // Prepare: four clients, K = 3, max_update_norm_ratio 3, no absolute norm bound.
        var options = new RemoteClientsOptions
        {
            Roster = ["a", "b", "c", "d"], Asynchronous = true, HeartbeatInterval = TimeSpan.FromMilliseconds(200), HeartbeatTimeout = TimeSpan.FromSeconds(5),
            MaxUpdateBytes = 64 << 10, MaxUpdateNormRatio = 3, RefusalBackoff = TimeSpan.Zero,
        };
        using var clients = new RemoteClients(options, new HostileUpdateTests.RecordingLogger());
        var run = new RunDescription("run-test", HostileUpdateTests.Base, new LoraOptions { Rank = 1 },
            new FederationOptions { Rounds = 1, TotalClients = 4, ClientsPerRound = 4 }, new FedLlm.Runs.LocalObjective());
        await using var host = await FederationHost.StartAsync("127.0.0.1:0", null, clients, run, new InsecureClaimedIdentity(), () => (0, null));
        var connections = new[] { "a", "b", "c", "d" }.Select(id => new ServerConnection(host.Address, id, Insecure: true)).ToArray();
        foreach (var connection in connections) await JoinAsync(connection);
        using (var global = Adapter(X0).AsDisposable()) clients.Publish(0, global.Value, new ClientInstructions(0, 0.1));
        foreach (var connection in connections) Assert.Equal(0, await PollAsync(connection));

        // Execute: norms ‖y − x‖ ≈ 1.15 (a), 1.87 (b), 11.18 (c): the median 1.87 bounds at 5.6, so c is dropped and the
        // aggregation waits for d.
        double[] other = { 0.5, -1.0, 0.75, -1.0, 2.0 };
        var take = clients.TakeAsync(3);
        Assert.True((await SubmitAsync(connections[0], 0, Honest)).Accepted);
        Assert.True((await SubmitAsync(connections[1], 0, other)).Accepted);
        Assert.True((await SubmitAsync(connections[2], 0, X0.Select(x => x + 5.0).ToArray())).Accepted);
        await Task.Delay(500);
        Assert.False(take.IsCompleted);
        Assert.True((await SubmitAsync(connections[3], 0, Honest)).Accepted);
        var taken = await take.WaitAsync(TimeSpan.FromSeconds(20));

        // Assert
        Assert.Equal(["a", "b", "d"], taken.Select(u => u.ClientId));
        foreach (var u in taken) AdapterTensors.Dispose(u.Delta);
        var c = clients.Status().Clients.Single(s => s.Id == "c");
        Assert.Equal((0, 1), (c.Accepted, c.Rejected));
    }
    [Fact]
    public async Task After_the_last_version_a_client_still_training_keeps_the_server_waiting_until_it_hears_the_run_is_over()
    {
        // Prepare: two clients both take version 0; the run ends while b still trains it.
        var options = new RemoteClientsOptions
        {
            Roster = ["a", "b"], Asynchronous = true, HeartbeatInterval = TimeSpan.FromMilliseconds(200),
            HeartbeatTimeout = TimeSpan.FromSeconds(30), MaxUpdateBytes = 64 << 10, RefusalBackoff = TimeSpan.Zero,
        };
        using var clients = new RemoteClients(options, new HostileUpdateTests.RecordingLogger());
        var run = new RunDescription("run-test", HostileUpdateTests.Base, new LoraOptions { Rank = 1 },
            new FederationOptions { Rounds = 1, TotalClients = 2, ClientsPerRound = 2 }, new FedLlm.Runs.LocalObjective());
        await using var host = await FederationHost.StartAsync("127.0.0.1:0", null, clients, run, new InsecureClaimedIdentity(), () => (0, null));
        var (a, b) = (new ServerConnection(host.Address, "a", Insecure: true), new ServerConnection(host.Address, "b", Insecure: true));
        await JoinAsync(a);
        await JoinAsync(b);
        using (var global = Adapter(X0).AsDisposable()) clients.Publish(0, global.Value, new ClientInstructions(0, 0.1));
        Assert.Equal(0, await PollAsync(a));
        Assert.Equal(0, await PollAsync(b));
        Assert.True((await SubmitAsync(a, 0, Honest)).Accepted);
        Assert.Single(await clients.TakeAsync(1));

        // Execute: the run is over; a hears it at once, b is still training (a live heartbeat, no poll yet).
        clients.Finish();
        Assert.Equal(1, clients.ClientsStillTraining); // b: the server must not exit yet
        using (var channel = b.Open())
        {
            var reply = await new FedLlm.Network.Protocol.Federation.FederationClient(channel).WaitForTaskAsync(new WaitForTaskRequest { WaitSeconds = 0.3 }, b.Headers());
            // Assert: b is told the run finished, and nobody is left training.
            Assert.True(reply.Finished);
        }
        Assert.Equal(0, clients.ClientsStillTraining);
    }
}

static class DisposableAdapter
{
    public sealed class Holder(Dictionary<string, Tensor> value) : IDisposable
    {
        public Dictionary<string, Tensor> Value { get; } = value;
        public void Dispose() => AdapterTensors.Dispose(Value);
    }

    public static Holder AsDisposable(this Dictionary<string, Tensor> adapter) => new(adapter);

}
