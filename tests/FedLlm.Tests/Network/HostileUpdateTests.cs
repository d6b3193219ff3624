using System.Collections.Concurrent;
using FedLlm.Federation;
using FedLlm.Federation.Transfer;
using FedLlm.Federation.Validation;
using FedLlm.Network;
using FedLlm.Network.Client;
using FedLlm.Network.Protocol;
using FedLlm.Network.Server;
using FedLlm.Peft;
using FedLlm.Tests.Federation;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Network;

/// <summary>
/// The server's screening of updates, over real gRPC on loopback (Kestrel in this process): every hostile kind is
/// refused with its reason logged against the sender, and the round goes on with the honest updates only.
/// </summary>
public class HostileUpdateTests
{
    static readonly double[] X0 = FederationTestData.X0;
    const string OtherKey = "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight";

    sealed class Harness : IAsyncDisposable
    {
        public required RemoteClients Clients { get; init; }
        public required FederationHost Host { get; init; }
        public required RecordingLogger Log { get; init; }
        public Dictionary<string, Tensor> Global { get; } = Adapter(X0);

        public static async Task<Harness> StartAsync(RemoteClientsOptions options)
        {
            var log = new RecordingLogger();
            var clients = new RemoteClients(options, log);
            var run = new RunDescription("run-test", "fingerprint-of-the-base", new LoraOptions { Rank = 1 },
                new FederationOptions { Rounds = 2, TotalClients = options.Roster.Count, ClientsPerRound = options.Roster.Count }, new FedLlm.Runs.LocalObjective());
            var host = await FederationHost.StartAsync("127.0.0.1:0", null, clients, run, new InsecureClaimedIdentity(), () => (0, null));
            return new Harness { Clients = clients, Host = host, Log = log };
        }

        public ServerConnection As(string id) => new(Host.Address, id, Insecure: true);

        public async Task<SubmitReply> SubmitAsync(string sender, int round, ClientUpdate update)
        {
            var connection = As(sender);
            using var channel = connection.Open();
            return await NetworkClient.SubmitAsync(new FedLlm.Network.Protocol.Federation.FederationClient(channel), connection, round, update, TransferEncoding.Default, default);
        }

        public Task<SubmitReply> SubmitAsync(string sender, int round, double[] flat, long examples = 10, string? claimed = null) =>
            SubmitAsync(sender, round, new ClientUpdate(claimed ?? sender, Adapter(flat), examples));

        public async ValueTask DisposeAsync()
        {
            await Host.DisposeAsync();
            Clients.Dispose();
        }
    }

    static RemoteClientsOptions Options(params string[] roster) => new()
    {
        Roster = roster, MinUpdates = 2, RoundDeadline = TimeSpan.FromSeconds(120),
        HeartbeatInterval = TimeSpan.FromMilliseconds(200), HeartbeatTimeout = TimeSpan.FromSeconds(2),
        MaxUpdateBytes = 64 << 10, Limits = new UpdateLimits { MaxUpdateNorm = 10 },
    };

    static readonly double[] Honest0 = { 1.5, -2.0, 0.25, 1.0, 3.0 };
    static readonly double[] Honest1 = { 0.5, -1.0, 0.75, -1.0, 2.0 };

    [Fact]
    public async Task Each_hostile_update_is_refused_with_its_reason_logged_and_the_round_aggregates_only_the_honest_ones()
    {
        await using var h = await Harness.StartAsync(Options("client-0", "client-1", "mallory"));
        var round0 = h.Clients.TrainRoundAsync(0, new[] { 0, 1, 2 }, h.Global, new ClientInstructions(0, 0.1));

        var nan = (double[])Honest0.Clone();
        nan[3] = double.NaN;
        var inf = (double[])Honest0.Clone();
        inf[0] = double.PositiveInfinity;
        var far = X0.Select(x => x + 5.0).ToArray(); // ‖y − x‖ = 5·√5 ≈ 11.18 > 10; honest ones are ≤ 2.1
        var attacks = new (string Kind, Func<Task<SubmitReply>> Send, string Reason)[]
        {
            ("wrong names", () => h.SubmitAsync("mallory", 0, new ClientUpdate("mallory", new Dictionary<string, Tensor>
                { [KeyA] = tensor(new[] { 1f, 2f }, new long[] { 1, 2 }), [OtherKey] = tensor(new[] { 1f, 2f, 3f }, new long[] { 3, 1 }) }, 10)),
                $"tensor '{OtherKey}' is not in the global adapter"),
            ("missing tensor", () => h.SubmitAsync("mallory", 0, new ClientUpdate("mallory", new Dictionary<string, Tensor>
                { [KeyA] = tensor(new[] { 1f, 2f }, new long[] { 1, 2 }) }, 10)), $"{KeyB} is missing"),
            ("wrong shape", () => h.SubmitAsync("mallory", 0, new ClientUpdate("mallory", new Dictionary<string, Tensor>
                { [KeyA] = tensor(new[] { 1f, 2f }, new long[] { 2, 1 }), [KeyB] = tensor(new[] { 1f, 2f, 3f }, new long[] { 3, 1 }) }, 10)),
                $"tensor '{KeyA}' has shape [2, 1], the global [1, 2]"),
            ("NaN", () => h.SubmitAsync("mallory", 0, nan), "1 NaN value"),
            ("Inf", () => h.SubmitAsync("mallory", 0, inf), "1 Inf value"),
            ("norm", () => h.SubmitAsync("mallory", 0, far), "exceeds the bound 10"),
            ("no examples", () => h.SubmitAsync("mallory", 0, Honest0, examples: 0), "example count 0 is not positive"),
            ("future round", () => h.SubmitAsync("mallory", 5, Honest0), "update for round 5 while round 0 is open"),
            ("impersonation", () => h.SubmitAsync("mallory", 0, Honest0, claimed: "client-0"), "update names client 'client-0' but the sender authenticated as 'mallory'"),
            ("oversize", () => h.SubmitAsync("mallory", 0, new ClientUpdate("mallory", Adapter(Honest0), 10,
                Metrics: Enumerable.Range(0, 8000).ToDictionary(i => $"padding_metric_{i}", i => (double)i))), "exceeds the size limit of 65536 bytes"),
        };
        foreach (var (kind, send, reason) in attacks)
        {
            var reply = await send();
            Assert.False(reply.Accepted, $"{kind} was accepted");
            Assert.Contains(reason, reply.Reason);
            Assert.Contains(h.Log.Lines, l => l.Contains("rejected update from client mallory") && l.Contains(reason));
        }

        AssertAccepted(await h.SubmitAsync("client-1", 0, Honest1, examples: 30));
        AssertAccepted(await h.SubmitAsync("client-0", 0, Honest0, examples: 10));
        // mallory falls silent: two seconds later it is left out and the round closes with the two honest updates.
        var updates = await round0.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(new[] { "client-0", "client-1" }, updates.Select(u => u.ClientId));
        Assert.Equal(Honest0, Flat(updates[0].Weights));
        Assert.Equal(new[] { 10L, 30L }, updates.Select(u => u.ExampleCount));
        Assert.Contains(h.Log.Lines, l => l.Contains("client mallory left out: missed heartbeats"));
        Assert.Equal(attacks.Length, h.Clients.Status().Clients.Single(c => c.Id == "mallory").Rejected);

        // Round 1 samples client-0 and client-1 only.
        var round1 = h.Clients.TrainRoundAsync(1, new[] { 0, 1 }, h.Global, new ClientInstructions(1, 0.1));
        var replayed = await h.SubmitAsync("client-0", 0, Honest0);
        Assert.Contains("update for round 0 while round 1 is open (late or replayed)", replayed.Reason);
        AssertAccepted((await h.SubmitAsync("client-0", 1, Honest1)));
        Assert.Contains("client-0 already submitted round 1 (replay)", (await h.SubmitAsync("client-0", 1, Honest0)).Reason);
        Assert.Contains("mallory was not given round 1's task", (await h.SubmitAsync("mallory", 1, Honest0)).Reason);
        AssertAccepted((await h.SubmitAsync("client-1", 1, Honest0, examples: 30)));
        var second = await round1.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(Honest1, Flat(second.Single(u => u.ClientId == "client-0").Weights));
        Assert.Contains(h.Log.Lines, l => l.Contains("round 0: rejected update from client client-0: update for round 0 while round 1 is open"));
        foreach (var u in updates.Concat(second)) AdapterTensors.Dispose(u.Weights);
    }

    static void AssertAccepted(SubmitReply reply) => Assert.True(reply.Accepted, $"refused: {reply.Reason}");

    [Fact]
    public async Task A_client_that_holds_its_task_past_the_deadline_is_left_out_and_its_late_update_refused()
    {
        var options = Options("a", "b", "slow") with { RoundDeadline = TimeSpan.FromSeconds(3), HeartbeatTimeout = TimeSpan.FromSeconds(60) };
        await using var h = await Harness.StartAsync(options);
        var round = h.Clients.TrainRoundAsync(0, new[] { 0, 1, 2 }, h.Global, new ClientInstructions(0, 0.1));
        var slow = h.As("slow");
        using (var channel = slow.Open())
        {
            var task = await new FedLlm.Network.Protocol.Federation.FederationClient(channel).WaitForTaskAsync(new WaitForTaskRequest { WaitSeconds = 10 }, slow.Headers());
            Assert.Equal(0, task.Task.Round);
        }
        AssertAccepted((await h.SubmitAsync("a", 0, Honest0)));
        AssertAccepted((await h.SubmitAsync("b", 0, Honest1)));
        Assert.False(round.IsCompleted, "with 'slow' alive and the deadline ahead, the round waits");
        var updates = await round.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(new[] { "a", "b" }, updates.Select(u => u.ClientId));
        Assert.Contains(h.Log.Lines, l => l.Contains("client slow left out: missed the round deadline"));
        var late = await h.SubmitAsync("slow", 0, Honest0);
        Assert.False(late.Accepted);
        Assert.Contains("update for round 0 arrived while no round is open (late or replayed)", late.Reason);
        foreach (var u in updates) AdapterTensors.Dispose(u.Weights);
    }

    [Fact]
    public async Task The_handshake_refuses_another_protocol_major_another_base_model_another_task_and_clients_off_the_roster()
    {
        await using var h = await Harness.StartAsync(Options("a", "b"));
        async Task<RpcException> Join(string id, uint major, string fingerprint, string task = "sft")
        {
            var connection = h.As(id);
            using var channel = connection.Open();
            return await Assert.ThrowsAsync<RpcException>(() => new FedLlm.Network.Protocol.Federation.FederationClient(channel).JoinAsync(new JoinRequest
            {
                Protocol = new ProtocolVersion { Major = major, Minor = 3 }, ClientId = id, ModelFingerprint = fingerprint, Task = task,
            }, connection.Headers()).ResponseAsync);
        }
        var version = await Join("a", 1, "fingerprint-of-the-base");
        Assert.Equal(StatusCode.FailedPrecondition, version.StatusCode);
        Assert.Contains("the client speaks fedllm.federation v1.3, this server v2.0", version.Status.Detail);
        var model = await Join("a", 2, "another-base");
        Assert.Contains("base model mismatch", model.Status.Detail);
        var task = await Join("a", 2, "fingerprint-of-the-base", "dpo");
        Assert.Equal(StatusCode.FailedPrecondition, task.StatusCode);
        Assert.Contains("the client's data is for 'dpo', this run trains 'sft'", task.Status.Detail);
        var stranger = await Join("eve", 2, "fingerprint-of-the-base");
        Assert.Equal(StatusCode.PermissionDenied, stranger.StatusCode);
        Assert.Contains("'eve' is not on this run's roster", stranger.Status.Detail);
    }

    /// <summary>Keeps every formatted log line, so tests can check what was logged against whom.</summary>
    internal sealed class RecordingLogger : ILogger
    {
        readonly ConcurrentQueue<string> lines = new();
        public IReadOnlyList<string> Lines => lines.ToArray();
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue($"{logLevel}: {formatter(state, exception)}");
    }
}
