using System.Net.Security;
using System.Net.Sockets;
using FedLlm.Federation;
using FedLlm.Federation.Transfer;
using FedLlm.Network.Client;
using FedLlm.Network.Protocol;
using FedLlm.Network.Security;
using FedLlm.Network.Server;
using FedLlm.Network.Transfer;
using FedLlm.Peft;
using FedLlm.Network;
using FedLlm.Security;
using Grpc.Core;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Network;

/// <summary>
/// The bulk channel on the federation port, over mutual TLS with a real kit: it carries what the RPCs carry, bit for
/// bit, and refuses whom and what they refuse, with the same reasons.
/// </summary>
public class BulkChannelTests
{
    static readonly double[] Sent = { 1.5, -2.0, 0.25, 1.0, 3.0 };

    static async Task<Dictionary<string, Tensor>> FetchOverRpcAsync(ServerConnection connection, int round)
    {
        using var channel = connection.Open();
        var api = new FedLlm.Network.Protocol.Federation.FederationClient(channel);
        return await NetworkClient.FetchAsync(api.FetchGlobal(new FetchRequest { Round = round }, connection.Headers()), default);
    }

    static async Task<SubmitReply> SubmitOverRpcAsync(ServerConnection connection, ClientUpdate update)
    {
        using var channel = connection.Open();
        return await NetworkClient.SubmitAsync(new FedLlm.Network.Protocol.Federation.FederationClient(channel), connection, 0, update, TransferEncoding.Default, default);
    }

    [Fact]
    public async Task Over_mutual_TLS_the_bulk_channel_fetches_what_FetchGlobal_gives_and_its_update_is_taken_as_SubmitUpdate_takes_it()
    {
        await using var server = await TlsIdentityTests.TlsServer.StartAsync("certificate");
        var alice = ClientCredentialsLoader.Connect(server.Host.Address, "alice", server.KitOf("alice"), insecure: false, "client.yaml");
        var bob = ClientCredentialsLoader.Connect(server.Host.Address, "bob", server.KitOf("bob"), insecure: false, "client.yaml");
        Assert.True((await TlsIdentityTests.JoinAsync(alice)).BulkTransfer);
        await TlsIdentityTests.JoinAsync(bob);
        var global = Adapter(X0);
        var round = server.Clients.TrainRoundAsync(0, new[] { 0, 1 }, global, new ClientInstructions(0, 0.1));

        var overBulk = await new BulkClient(alice).FetchAsync(new FetchRequest { Round = 0 }, tensorSet: false, default);
        var overRpc = await FetchOverRpcAsync(bob, 0);
        Assert.Equal(overRpc.Keys.Order(), overBulk.Keys.Order());
        foreach (var (name, expected) in overRpc) Assert.Equal(expected.bytes.ToArray(), overBulk[name].bytes.ToArray());
        Assert.Equal(X0, Flat(overBulk));

        // The same update from both: taken bit for bit the same, whichever way it came.
        Assert.True((await new BulkClient(alice).SubmitAsync(0, new ClientUpdate("alice", Adapter(Sent), 10), TransferEncoding.Default, default)).Accepted);
        Assert.True((await SubmitOverRpcAsync(bob, new ClientUpdate("bob", Adapter(Sent), 10))).Accepted);
        var updates = await round.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(new[] { "alice", "bob" }, updates.Select(u => u.ClientId));
        Assert.Equal(Flat(updates[1].Weights), Flat(updates[0].Weights));
        Assert.Equal(Sent, Flat(updates[0].Weights));
        // Both directions are counted in the round's traffic.
        var traffic = server.Clients.MeasuredTraffic(0)!.Value;
        Assert.True(traffic.Sent >= 2 * 5 * 4 && traffic.Received >= 2 * 5 * 4, $"traffic {traffic}");
        foreach (var u in updates) AdapterTensors.Dispose(u.Weights);
        AdapterTensors.Dispose(overBulk);
        AdapterTensors.Dispose(overRpc);
    }

    [Fact]
    public async Task The_bulk_channel_refuses_whom_and_what_the_RPCs_refuse_and_logs_a_connection_that_does_not_speak_it()
    {
        await using var server = await TlsIdentityTests.TlsServer.StartAsync("certificate");
        var alice = ClientCredentialsLoader.Connect(server.Host.Address, "alice", server.KitOf("alice"), insecure: false, "client.yaml");
        await TlsIdentityTests.JoinAsync(alice);

        // No round is open yet.
        var early = await Assert.ThrowsAsync<RpcException>(() => new BulkClient(alice).FetchAsync(new FetchRequest { Round = 0 }, tensorSet: false, default));
        Assert.Equal(StatusCode.FailedPrecondition, early.StatusCode);

        var round = server.Clients.TrainRoundAsync(0, new[] { 0, 1 }, Adapter(X0), new ClientInstructions(0, 0.1));
        // A valid certificate of this CA, not on the roster: the same one-line, permanent reason as on the RPCs.
        var carol = ClientCredentialsLoader.Connect(server.Host.Address, "carol", server.KitOf("carol"), insecure: false, "client.yaml");
        var offRoster = await Assert.ThrowsAsync<RpcException>(() => new BulkClient(carol).FetchAsync(new FetchRequest { Round = 0 }, tensorSet: false, default));
        Assert.True(ConnectionFailure.Classify(offRoster, carol).Permanent);
        Assert.Contains("'carol' proved its identity but is not among this server's clients", offRoster.Status.Detail);

        // alice's certificate, bob's name in the request.
        var claim = await Assert.ThrowsAsync<RpcException>(() => new BulkClient(alice with { ClientId = "bob" }).FetchAsync(new FetchRequest { Round = 0 }, tensorSet: false, default));
        Assert.Equal(StatusCode.Unauthenticated, claim.StatusCode);
        Assert.Contains("the client certificate proves 'alice', but the request claims to be 'bob'", claim.Status.Detail);

        // A tensor set the round does not have.
        var missing = await Assert.ThrowsAsync<RpcException>(() => new BulkClient(alice).FetchAsync(new FetchRequest { Round = 0, TensorSet = "server_control" }, tensorSet: true, default));
        Assert.Equal(StatusCode.NotFound, missing.StatusCode);

        // An update whose tensor has another shape: refused while alice is still sending, with the reason, and alice is
        // out of the round as over SubmitUpdate.
        var wrong = new ClientUpdate("alice", new Dictionary<string, Tensor>
            { [KeyA] = zeros(new long[] { 2, 1 }), [KeyB] = zeros(new long[] { 3, 1 }) }, 10);
        var refused = await new BulkClient(alice).SubmitAsync(0, wrong, TransferEncoding.Default, default);
        Assert.False(refused.Accepted);
        Assert.Contains($"tensor '{KeyA}' has shape [2, 1], the global [1, 2]", refused.Reason);
        Assert.Contains(server.Log.Lines, l => l.Contains("rejected update from client alice") && l.Contains("has shape [2, 1]"));
        Assert.Contains("was refused already", (await new BulkClient(alice).SubmitAsync(0, new ClientUpdate("alice", Adapter(Sent), 10), TransferEncoding.Default, default)).Reason);

        // TLS with the bulk protocol, then bytes that are not the channel's preface: dropped, and logged with the peer.
        var uri = new Uri(server.Host.Address);
        using (var socket = new TcpClient())
        {
            await socket.ConnectAsync(uri.Host, uri.Port);
            await using var tls = new SslStream(socket.GetStream());
            var options = alice.BulkTls!();
            options.TargetHost = uri.Host;
            options.ApplicationProtocols = [BulkFrames.ApplicationProtocol];
            await tls.AuthenticateAsClientAsync(options);
            await tls.WriteAsync("GET / HTTP/1.1\r\n\r\n"u8.ToArray());
            await tls.FlushAsync();
            Assert.Equal(0, await tls.ReadAsync(new byte[16]));
        }
        await server.Log.WaitForAsync(l => l.Contains("127.0.0.1") && l.Contains("did not open with the bulk channel's preface"));

        var bob = ClientCredentialsLoader.Connect(server.Host.Address, "bob", server.KitOf("bob"), insecure: false, "client.yaml");
        await TlsIdentityTests.JoinAsync(bob);
        Assert.True((await new BulkClient(bob).SubmitAsync(0, new ClientUpdate("bob", Adapter(Sent), 10), TransferEncoding.Default, default)).Accepted);
        var updates = await round.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(new[] { "bob" }, updates.Select(u => u.ClientId));
        foreach (var u in updates) AdapterTensors.Dispose(u.Weights);
    }

    [Fact]
    public async Task A_token_client_uses_the_bulk_channel_and_a_server_with_bulk_transfer_off_says_so_and_refuses_it()
    {
        await using (var server = await TlsIdentityTests.TlsServer.StartAsync("token"))
        {
            var bob = ClientCredentialsLoader.Connect(server.Host.Address, "bob", server.KitOf("bob"), insecure: false, "client.yaml", auth: "token");
            Assert.True((await TlsIdentityTests.JoinAsync(bob)).BulkTransfer);
            var round = server.Clients.TrainRoundAsync(0, new[] { 1 }, Adapter(X0), new ClientInstructions(0, 0.1));
            var global = await new BulkClient(bob).FetchAsync(new FetchRequest { Round = 0 }, tensorSet: false, default);
            Assert.Equal(X0, Flat(global));
            AdapterTensors.Dispose(global);
            using var ca = PemFiles.ReadCertificate(Path.Combine(server.KitOf("bob"), CertificateAuthority.CertificateFileName));
            var aliceWithBobsToken = ClientCredentialsLoader.WithToken(server.Host.Address, "alice", File.ReadAllText(Path.Combine(server.KitOf("bob"), "token")).Trim(), ca);
            var refused = await Assert.ThrowsAsync<RpcException>(() => new BulkClient(aliceWithBobsToken).FetchAsync(new FetchRequest { Round = 0 }, tensorSet: false, default));
            Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode);
            Assert.Contains("client 'alice': the token is not valid for this client", refused.Status.Detail);
            Assert.True((await new BulkClient(bob).SubmitAsync(0, new ClientUpdate("bob", Adapter(Sent), 10), TransferEncoding.Default, default)).Accepted);
            foreach (var u in await round.WaitAsync(TimeSpan.FromSeconds(60))) AdapterTensors.Dispose(u.Weights);
        }

        await using var plain = await TlsIdentityTests.TlsServer.StartAsync("certificate", bulkTransfer: false);
        var alice = ClientCredentialsLoader.Connect(plain.Host.Address, "alice", plain.KitOf("alice"), insecure: false, "client.yaml");
        Assert.False((await TlsIdentityTests.JoinAsync(alice)).BulkTransfer);
        var off = await Assert.ThrowsAsync<RpcException>(() => new BulkClient(alice).FetchAsync(new FetchRequest { Round = 0 }, tensorSet: false, default));
        Assert.Equal(StatusCode.Unavailable, off.StatusCode);
    }

    [Fact]
    public void Server_yaml_turns_the_bulk_channel_off_by_its_key_and_refuses_a_misspelt_one()
    {
        using var temp = new FedLlm.Tests.Data.TempDirectory();
        Assert.True(FedLlm.Network.ServerConfig.Load(temp.File("on.yaml", "server:\n  roster: [a]\n")).Server.BulkTransfer);
        Assert.False(FedLlm.Network.ServerConfig.Load(temp.File("off.yaml", "server:\n  roster: [a]\n  bulk_transfer: false\n")).Server.BulkTransfer);
        var typo = Assert.ThrowsAny<Exception>(() => FedLlm.Network.ServerConfig.Load(temp.File("typo.yaml", "server:\n  roster: [a]\n  bulk_transfers: false\n")));
        Assert.Contains("bulk_transfers", typo.Message);
    }
}

/// <summary>The receive pool: released tensors are decoded into again, and what arrives is the new upload, never the
/// old values.</summary>
public class ReceivePoolTests
{
    [Fact]
    public void The_pool_keeps_float32_tensors_by_shape_within_its_capacity_and_frees_the_rest()
    {
        using var pool = new ReceivePool(capacityBytes: 6 * 4);
        Assert.Null(pool.Rent(new long[] { 2, 3 }));
        var kept = ones(2, 3);
        var half = ones(new long[] { 2, 3 }, dtype: ScalarType.BFloat16);
        var over = ones(1, 1);
        pool.Return([kept, half, over]);
        Assert.Equal(24, pool.HeldBytes);
        Assert.Throws<InvalidOperationException>(() => half.numel()); // not float32: freed at once
        Assert.Throws<InvalidOperationException>(() => over.numel()); // over capacity: freed
        Assert.Null(pool.Rent(new long[] { 3, 2 }));
        Assert.Same(kept, pool.Rent(new long[] { 2, 3 }));
        Assert.Equal(0, pool.HeldBytes);
        kept.Dispose();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_released_updates_memory_receives_the_next_rounds_upload_and_holds_exactly_the_new_values(bool bulk)
    {
        var log = new HostileUpdateTests.RecordingLogger();
        using var clients = new RemoteClients(new RemoteClientsOptions { Roster = ["a"], MinUpdates = 1, RoundDeadline = TimeSpan.FromSeconds(60) }, log);
        var run = new RunDescription("run-pool", HostileUpdateTests.Base, new LoraOptions { Rank = 1 },
            new FederationOptions { Rounds = 2, TotalClients = 1, ClientsPerRound = 1 }, new FedLlm.Runs.LocalObjective());
        await using var host = await FederationHost.StartAsync("127.0.0.1:0", null, clients, run, new InsecureClaimedIdentity(), () => (0, null));
        var connection = new ServerConnection(host.Address, "a", Insecure: true);
        using (var channel = connection.Open())
            await new FedLlm.Network.Protocol.Federation.FederationClient(channel).JoinAsync(new JoinRequest
                { Protocol = ProtocolInfo.Current, ClientId = "a", ModelFingerprint = HostileUpdateTests.Base.Combined, Task = "sft", ExampleCount = 100 }, connection.Headers());
        async Task<ClientUpdate> RoundAsync(int round, double[] values)
        {
            var pending = clients.TrainRoundAsync(round, [0], Adapter(X0), new ClientInstructions(round, 0.1));
            var update = new ClientUpdate("a", Adapter(values), 10);
            SubmitReply reply;
            if (bulk) reply = await new BulkClient(connection).SubmitAsync(round, update, TransferEncoding.Default, default);
            else
            {
                using var channel = connection.Open();
                reply = await NetworkClient.SubmitAsync(new FedLlm.Network.Protocol.Federation.FederationClient(channel), connection, round, update, TransferEncoding.Default, default);
            }
            Assert.True(reply.Accepted, reply.Reason);
            update.DisposeTensors();
            return (await pending.WaitAsync(TimeSpan.FromSeconds(60))).Single();
        }

        double[] first = [1.5, -2.0, 0.25, 1.0, 3.0];
        double[] second = [-7.0, 0.5, 2.0, -0.125, 9.0];
        var one = await RoundAsync(0, first);
        var kept = one.Weights.Values.ToHashSet(ReferenceEqualityComparer.Instance);
        clients.Release([one]);
        Assert.Equal(5 * 4, clients.Received.HeldBytes);
        var two = await RoundAsync(1, second);
        // Decoded into the released tensors (the pool is empty again), and they hold the second upload exactly.
        Assert.Equal(0, clients.Received.HeldBytes);
        Assert.All(two.Weights.Values, t => Assert.True(kept.Contains(t), "a new tensor, not a released one"));
        Assert.Equal(second, Flat(two.Weights));
        clients.Release([two]);
    }
}

/// <summary>The stall timeout of transfers: a bulk connection or an update stream that stops moving data is closed and
/// logged, and an upload cut that way holds nothing afterwards (the client's next upload is taken).</summary>
public class TransferStallTests
{
    static readonly double[] Sent = { 1.5, -2.0, 0.25, 1.0, 3.0 };

    sealed class Server(RemoteClients clients, FederationHost host, HostileUpdateTests.RecordingLogger refusals) : IAsyncDisposable
    {
        public RemoteClients Clients => clients;
        public HostileUpdateTests.RecordingLogger Refusals => refusals;
        public ServerConnection Connection { get; } = new(host.Address, "a", Insecure: true);
        public Uri Address { get; } = new(host.Address);

        /// <summary>A server whose transfers stall out after 2 s, with client a joined.</summary>
        public static async Task<Server> StartAsync()
        {
            var refusals = new HostileUpdateTests.RecordingLogger();
            var clients = new RemoteClients(new RemoteClientsOptions
                { Roster = ["a"], MinUpdates = 1, RoundDeadline = TimeSpan.FromSeconds(120), TransferStallTimeout = TimeSpan.FromSeconds(2) }, new HostileUpdateTests.RecordingLogger());
            var run = new RunDescription("run-stall", HostileUpdateTests.Base, new LoraOptions { Rank = 1 },
                new FederationOptions { Rounds = 1, TotalClients = 1, ClientsPerRound = 1 }, new FedLlm.Runs.LocalObjective());
            var host = await FederationHost.StartAsync("127.0.0.1:0", null, clients, run, new InsecureClaimedIdentity(), () => (0, null),
                extras: new FederationHostExtras { RefusalLogger = refusals });
            var server = new Server(clients, host, refusals);
            using (var channel = server.Connection.Open())
                await new FedLlm.Network.Protocol.Federation.FederationClient(channel).JoinAsync(new JoinRequest
                    { Protocol = ProtocolInfo.Current, ClientId = "a", ModelFingerprint = HostileUpdateTests.Base.Combined, Task = "sft", ExampleCount = 100 }, server.Connection.Headers());
            return server;
        }

        /// <summary>After a stalled upload: the client's next upload (over the bulk channel) is taken whole.</summary>
        public async Task NextUploadIsTakenAsync(Task<IReadOnlyList<ClientUpdate>> pending, ClientUpdate update)
        {
            var reply = await new BulkClient(Connection).SubmitAsync(0, update, TransferEncoding.Default, default);
            Assert.True(reply.Accepted, reply.Reason);
            var taken = (await pending.WaitAsync(TimeSpan.FromSeconds(60))).Single();
            Assert.Equal(Sent, Flat(taken.Weights));
            taken.DisposeTensors();
        }

        public async ValueTask DisposeAsync()
        {
            await host.DisposeAsync();
            clients.Dispose();
        }
    }

    static async Task<double> SecondsUntilClosedAsync(Stream stream)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            while (await stream.ReadAsync(new byte[256]).AsTask().WaitAsync(TimeSpan.FromSeconds(30)) > 0) { }
        }
        catch (IOException)
        {
            // Reset by the server: closed all the same.
        }
        return clock.Elapsed.TotalSeconds;
    }

    static async Task<Stream> OpenBulkAsync(Uri address)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(address.Host, address.Port);
        var stream = new NetworkStream(socket, ownsSocket: true);
        await stream.WriteAsync(BulkFrames.Preface.ToArray());
        return stream;
    }

    static TensorChunk FirstChunk(ClientUpdate update)
    {
        var (name, tensor) = update.Weights.OrderBy(kv => kv.Key, StringComparer.Ordinal).First();
        return TensorChunks.Stream(name, tensor, TransferEncoding.Default).First();
    }

    [Fact]
    public async Task A_bulk_connection_that_stops_moving_data_is_closed_and_logged_and_a_stalled_upload_frees_its_slot()
    {
        await using var server = await Server.StartAsync();

        // A connection that sends its preface and then nothing.
        await using (var idle = await OpenBulkAsync(server.Address))
            Assert.InRange(await SecondsUntilClosedAsync(idle), 1.5, 15);
        await server.Refusals.WaitForAsync(l => l.Contains("refused stalled", StringComparison.Ordinal) && l.Contains("moved no data for 2 s", StringComparison.Ordinal));

        // An upload that stops inside its first tensor.
        var pending = server.Clients.TrainRoundAsync(0, [0], Adapter(X0), new ClientInstructions(0, 0.1));
        var update = new ClientUpdate("a", Adapter(Sent), 10);
        await using (var stalled = await OpenBulkAsync(server.Address))
        {
            await BulkFrames.WriteMessageAsync(stalled, new BulkRequest { ClientId = "a", SubmitUpdate = new UpdateHeader { Round = 0, ClientId = "a", ExampleCount = 10 } }, default);
            var go = await BulkFrames.ReadMessageAsync(stalled, BulkReply.Parser, default);
            Assert.True(go!.Accepted, go.Reason);
            var first = FirstChunk(update);
            await BulkFrames.WriteMessageAsync(stalled, new BulkTensor { Header = first.Header }, default);
            await stalled.WriteAsync(first.Data.Memory[..2]);
            await stalled.FlushAsync();
            Assert.InRange(await SecondsUntilClosedAsync(stalled), 1.5, 15);
        }
        await server.NextUploadIsTakenAsync(pending, update);
        update.DisposeTensors();
    }

    [Fact]
    public async Task An_update_stream_that_stops_moving_data_ends_with_the_reason_and_frees_its_slot()
    {
        await using var server = await Server.StartAsync();
        var pending = server.Clients.TrainRoundAsync(0, [0], Adapter(X0), new ClientInstructions(0, 0.1));
        var update = new ClientUpdate("a", Adapter(Sent), 10);
        using (var channel = server.Connection.Open())
        {
            var api = new FedLlm.Network.Protocol.Federation.FederationClient(channel);
            using var call = api.SubmitUpdate(server.Connection.Headers());
            await call.RequestStream.WriteAsync(new UpdateChunk { Header = new UpdateHeader { Round = 0, ClientId = "a", ExampleCount = 10 } });
            await call.RequestStream.WriteAsync(new UpdateChunk { Weights = FirstChunk(update) });
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.InRange(clock.Elapsed.TotalSeconds, 1.5, 15);
            Assert.Equal(StatusCode.DeadlineExceeded, error.StatusCode);
            Assert.Contains("update stream moved no data for 2 s", error.Status.Detail);
        }
        await server.Refusals.WaitForAsync(l => l.Contains("refused stalled", StringComparison.Ordinal));
        // A stream that never sends its header ends the same way.
        using (var channel = server.Connection.Open())
        {
            using var call = new FedLlm.Network.Protocol.Federation.FederationClient(channel).SubmitUpdate(server.Connection.Headers());
            var error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal(StatusCode.DeadlineExceeded, error.StatusCode);
        }
        await server.NextUploadIsTakenAsync(pending, update);
        update.DisposeTensors();
    }
}
