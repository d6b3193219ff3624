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

    sealed class TlsServer : IAsyncDisposable
    {
        public required TempDirectory Kit { get; init; }
        public required RemoteClients Clients { get; init; }
        public required FederationHost Host { get; init; }
        public required HostileUpdateTests.RecordingLogger Log { get; init; }

        public static async Task<TlsServer> StartAsync(string auth)
        {
            var kit = new TempDirectory();
            ProvisioningKit.Create(kit.Path, new[] { "127.0.0.1" }, new[] { "alice", "bob" }, "https://127.0.0.1:50051");
            var section = new ServerConfig.ServerSection { Kit = Path.Combine(kit.Path, "server"), Auth = auth, Roster = new() { "alice", "bob" } };
            var log = new HostileUpdateTests.RecordingLogger();
            var security = ServerSecurityLoader.Load(section, "server.yaml");
            var clients = new RemoteClients(new RemoteClientsOptions { Roster = section.Roster, MinUpdates = 1 }, log);
            var run = new RunDescription("run-tls", "base", new LoraOptions { Rank = 1 }, new FederationOptions { Rounds = 1, TotalClients = 2 }, new FedLlm.Runs.LocalObjective());
            var host = await FederationHost.StartAsync("127.0.0.1:0", security.Tls, clients, run, security.Authenticator, () => (0, null));
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

    static async Task<JoinReply> JoinAsync(ServerConnection connection)
    {
        using var channel = connection.Open();
        return await new FedLlm.Network.Protocol.Federation.FederationClient(channel).JoinAsync(
            new JoinRequest { Protocol = ProtocolInfo.Current, ClientId = connection.ClientId, ModelFingerprint = "base" }, connection.Headers());
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
}
