using FedLlm.Federation;
using FedLlm.Federation.Transfer;
using FedLlm.Network;
using FedLlm.Network.Client;
using FedLlm.Network.Protocol;
using FedLlm.Network.Security;
using FedLlm.Network.Server;
using FedLlm.Peft;
using FedLlm.Security;
using FedLlm.Tests.Data;
using Grpc.Core;
using static FedLlm.Tests.Federation.FederationTestData;

namespace FedLlm.Tests.Network;

/// <summary>
/// TLS and client identity over loopback with a real provisioning kit: the id comes from the client's certificate or
/// token, so a client cannot act, or send an update, in another's name.
/// </summary>
public class TlsIdentityTests
{
    static readonly double[] Honest = { 1.5, -2.0, 0.25, 1.0, 3.0 };

    internal sealed class TlsServer : IAsyncDisposable
    {
        public required TempDirectory Kit { get; init; }
        public required RemoteClients Clients { get; init; }
        public required FederationHost Host { get; init; }
        public required HostileUpdateTests.RecordingLogger Log { get; init; }

        public static async Task<TlsServer> StartAsync(string auth, bool bulkTransfer = true)
        {
            var kit = new TempDirectory();
            ProvisioningKit.Create(kit.Path, new[] { "127.0.0.1" }, new[] { "alice", "bob" }, "https://127.0.0.1:50051");
            // carol holds a valid certificate of this CA but is not on the server's roster; ops is an operator.
            ProvisioningKit.AddClient(kit.Path, "carol");
            ProvisioningKit.AddAdmin(kit.Path, "ops");
            var section = new ServerConfig.ServerSection { Kit = Path.Combine(kit.Path, "server"), Auth = auth, Roster = new() { "alice", "bob" } };
            var log = new HostileUpdateTests.RecordingLogger();
            var security = ServerSecurityLoader.Load(section, "server.yaml");
            var clients = new RemoteClients(new RemoteClientsOptions { Roster = section.Roster, MinUpdates = 1 }, log);
            var run = new RunDescription("run-tls", HostileUpdateTests.Base, new LoraOptions { Rank = 1 }, new FederationOptions { Rounds = 1, TotalClients = 2 },
                new FedLlm.Runs.LocalObjective()) { BulkTransfer = bulkTransfer };
            var host = await FederationHost.StartAsync("127.0.0.1:0", security.Tls, clients, run, security.Authenticator, () => (0, null),
                extras: new FederationHostExtras { Admin = security.Admin, RefusalLogger = log });
            return new TlsServer { Kit = kit, Clients = clients, Host = host, Log = log };
        }

        public string KitOf(string id) => ProvisioningKit.ClientFolder(Kit.Path, id);

        public async ValueTask DisposeAsync()
        {
            await Host.DisposeAsync();
            Clients.Dispose();
            Kit.Dispose();
        }
    }

    internal static async Task<JoinReply> JoinAsync(ServerConnection connection)
    {
        using var channel = connection.Open();
        return await new FedLlm.Network.Protocol.Federation.FederationClient(channel).JoinAsync(
            new JoinRequest { Protocol = ProtocolInfo.Current, ClientId = connection.ClientId, ModelFingerprint = HostileUpdateTests.Base.Combined }, connection.Headers());
    }

    static async Task<SubmitReply> SubmitAsync(ServerConnection connection, string claimedId)
    {
        using var channel = connection.Open();
        return await NetworkClient.SubmitAsync(new FedLlm.Network.Protocol.Federation.FederationClient(channel), connection, 0,
            new ClientUpdate(claimedId, Adapter(Honest), 10), TransferEncoding.Default, default);
    }

    [Fact]
    public async Task With_mutual_TLS_the_certificate_is_the_identity_and_no_one_submits_in_anothers_name()
    {
        await using var server = await TlsServer.StartAsync("certificate");
        Assert.StartsWith("https://127.0.0.1:", server.Host.Address);
        var alice = ClientCredentialsLoader.Connect(server.Host.Address, "alice", server.KitOf("alice"), insecure: false, "client.yaml");
        Assert.Equal(0, (await JoinAsync(alice)).RosterIndex);

        // alice's certificate, but the call claims to be bob: refused before any handler runs.
        var aliceAsBob = alice with { ClientId = "bob" };
        var claim = await Assert.ThrowsAsync<RpcException>(() => JoinAsync(aliceAsBob));
        Assert.Equal(StatusCode.Unauthenticated, claim.StatusCode);
        Assert.Contains("the client certificate proves 'alice', but the request claims to be 'bob'", claim.Status.Detail);

        var round = server.Clients.TrainRoundAsync(0, new[] { 0, 1 }, Adapter(X0), new ClientInstructions(0, 0.1));
        // An update whose header names bob, sent over alice's authenticated connection.
        var forged = await SubmitAsync(alice, claimedId: "bob");
        Assert.False(forged.Accepted);
        Assert.Contains("update names client 'bob' but the sender authenticated as 'alice'", forged.Reason);
        Assert.Contains(server.Log.Lines, l => l.Contains("rejected update from client alice: update names client 'bob'"));
        Assert.True((await SubmitAsync(alice, "alice")).Accepted);
        var bob = ClientCredentialsLoader.Connect(server.Host.Address, "bob", server.KitOf("bob"), insecure: false, "client.yaml");
        Assert.True((await SubmitAsync(bob, "bob")).Accepted);
        var updates = await round.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(new[] { "alice", "bob" }, updates.Select(u => u.ClientId));

        // Without a certificate the TLS handshake itself fails.
        using var ca = PemFiles.ReadCertificate(Path.Combine(server.KitOf("alice"), CertificateAuthority.CertificateFileName));
        var anonymous = ClientCredentialsLoader.WithToken(server.Host.Address, "alice", File.ReadAllText(Path.Combine(server.KitOf("alice"), "token")).Trim(), ca);
        await Assert.ThrowsAsync<RpcException>(() => JoinAsync(anonymous));
    }

    [Fact]
    public async Task With_token_authentication_a_token_speaks_only_for_its_own_client()
    {
        await using var server = await TlsServer.StartAsync("token");
        using var ca = PemFiles.ReadCertificate(Path.Combine(server.KitOf("bob"), CertificateAuthority.CertificateFileName));
        string Token(string id) => File.ReadAllText(Path.Combine(server.KitOf(id), "token")).Trim();

        var bob = ClientCredentialsLoader.WithToken(server.Host.Address, "bob", Token("bob"), ca);
        Assert.Equal(1, (await JoinAsync(bob)).RosterIndex);

        var aliceWithBobsToken = ClientCredentialsLoader.WithToken(server.Host.Address, "alice", Token("bob"), ca);
        var refused = await Assert.ThrowsAsync<RpcException>(() => JoinAsync(aliceWithBobsToken));
        Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode);
        Assert.Contains("client 'alice': the token is not valid for this client", refused.Status.Detail);
        var submit = await Assert.ThrowsAsync<RpcException>(() => SubmitAsync(aliceWithBobsToken, "alice"));
        Assert.Equal(StatusCode.Unauthenticated, submit.StatusCode);
    }

    [Fact]
    public async Task Permanent_refusals_reach_the_client_as_one_line_reasons_and_every_refusal_is_logged_with_the_peer()
    {
        await using var server = await TlsServer.StartAsync("certificate");
        // A valid certificate of this CA whose id is not on the roster: the handshake completes, the call says why.
        var carol = ClientCredentialsLoader.Connect(server.Host.Address, "carol", server.KitOf("carol"), insecure: false, "client.yaml");
        var offRoster = await Assert.ThrowsAsync<RpcException>(() => JoinAsync(carol));
        var failure = ConnectionFailure.Classify(offRoster, carol);
        Assert.True(failure.Permanent);
        Assert.Contains("'carol' proved its identity but is not among this server's clients", failure.Message);
        await server.Log.WaitForAsync(l => l.Contains("refused") && l.Contains("127.0.0.1") && l.Contains("'carol' proved its identity"));

        // A kit from another `fedllm certs`: the server refuses the certificate in the handshake.
        using var other = new TempDirectory();
        ProvisioningKit.Create(other.Path, new[] { "127.0.0.1" }, new[] { "alice" }, "https://127.0.0.1:50051");
        var stranger = ClientCredentialsLoader.Connect(server.Host.Address, "alice", ProvisioningKit.ClientFolder(other.Path, "alice"), insecure: false, "client.yaml");
        var foreign = await Assert.ThrowsAsync<RpcException>(() => JoinAsync(stranger));
        var classified = ConnectionFailure.Classify(foreign, stranger);
        Assert.True(classified.Permanent, classified.Message);
        Assert.Contains("certificate", classified.Message);
        Assert.DoesNotContain("\n", classified.Message);
        await server.Log.WaitForAsync(l => l.Contains("refused certificate from 127.0.0.1") && l.Contains("not issued by this federation's CA"));

        // Plain text on the TLS port: logged, once per peer and reason a minute.
        for (int i = 0; i < 3; i++)
        {
            using var tcp = new System.Net.Sockets.TcpClient();
            await tcp.ConnectAsync(System.Net.IPAddress.Loopback, new Uri(server.Host.Address).Port);
            await tcp.GetStream().WriteAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray());
            var buffer = new byte[64];
            try { await tcp.GetStream().ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(5)); } catch (IOException) { }
        }
        await server.Log.WaitForAsync(l => l.Contains("refused plaintext from 127.0.0.1: plain-text HTTP on the TLS port"));
        Assert.Single(server.Log.Lines, l => l.Contains("refused plaintext from 127.0.0.1: plain-text HTTP on the TLS port"));

        // A network outage is not permanent.
        var closed = ClientCredentialsLoader.Connect($"https://127.0.0.1:{TinyFederation.FreePort()}", "alice", server.KitOf("alice"), insecure: false, "client.yaml");
        var unreachable = await Assert.ThrowsAsync<RpcException>(() => JoinAsync(closed));
        Assert.False(ConnectionFailure.Classify(unreachable, closed).Permanent);
    }

    [Fact]
    public async Task A_token_only_kit_joins_a_token_server_and_the_token_is_checked_even_beside_a_certificate()
    {
        await using var server = await TlsServer.StartAsync("token");
        // A kit without client.crt (and client.key): ca.crt pins the server, the token proves the client.
        File.Delete(Path.Combine(server.KitOf("bob"), ProvisioningKit.ClientCertificateFileName));
        File.Delete(Path.Combine(server.KitOf("bob"), ProvisioningKit.ClientKeyFileName));
        var bob = ClientCredentialsLoader.Connect(server.Host.Address, "bob", server.KitOf("bob"), insecure: false, "client.yaml");
        Assert.Equal(1, (await JoinAsync(bob)).RosterIndex);

        // alice's full kit with `auth: token`, and with a wrong token: the certificate does not stand in for it.
        var alice = ClientCredentialsLoader.Connect(server.Host.Address, "alice", server.KitOf("alice"), insecure: false, "client.yaml", auth: "token");
        Assert.Equal(0, (await JoinAsync(alice)).RosterIndex);
        var withCertificate = ClientCredentialsLoader.Connect(server.Host.Address, "alice", server.KitOf("alice"), insecure: false, "client.yaml", auth: "certificate");
        var refused = await Assert.ThrowsAsync<RpcException>(() => JoinAsync(withCertificate with { Token = "not-alices-token" }));
        Assert.Contains("the token is not valid", refused.Status.Detail);
        Assert.Contains(server.Log.Lines, l => l.Contains("refused auth from 127.0.0.1") && l.Contains("the token is not valid"));
    }

    [Fact]
    public async Task An_admin_certificate_removes_a_client_and_a_client_certificate_cannot_call_the_admin_service()
    {
        await using var server = await TlsServer.StartAsync("certificate");
        var ops = ClientCredentialsLoader.Admin(server.Host.Address, ProvisioningKit.AdminFolder(server.Kit.Path, "ops"));
        using (var channel = ops.Open())
        {
            var reply = await new Admin.AdminClient(channel).RemoveClientAsync(new RemoveClientRequest { ClientId = "bob" });
            Assert.Contains("client 'bob' removed", reply.Message);
        }
        Assert.True(server.Clients.IsRemoved("bob"));
        var alice = ClientCredentialsLoader.Connect(server.Host.Address, "alice", server.KitOf("alice"), insecure: false, "client.yaml");
        using (var channel = alice.Open())
        {
            var denied = await Assert.ThrowsAsync<RpcException>(() => new Admin.AdminClient(channel).AbortRoundAsync(new AbortRoundRequest()).ResponseAsync);
            Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
            Assert.Contains("not an admin certificate", denied.Status.Detail);
        }
        var bob = ClientCredentialsLoader.Connect(server.Host.Address, "bob", server.KitOf("bob"), insecure: false, "client.yaml");
        var gone = await Assert.ThrowsAsync<RpcException>(() => JoinAsync(bob));
        Assert.True(ConnectionFailure.Classify(gone, bob).Permanent);
    }
}
