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
    internal static readonly ModelFingerprint Base = new(new Dictionary<string, string> { ["config.json"] = "c0ffee", ["model.safetensors"] = "beef" });
    const string OtherKey = "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight";

    sealed class Harness : IAsyncDisposable
    {
        public required RemoteClients Clients { get; init; }
        public required FederationHost Host { get; init; }
        public required RecordingLogger Log { get; init; }
        public Dictionary<string, Tensor> Global { get; } = Adapter(X0);

        /// <summary>Updates go over the bulk channel instead of SubmitUpdate.</summary>
        public bool Bulk { get; init; }

        public static async Task<Harness> StartAsync(RemoteClientsOptions options, bool bulk = false)
        {
            var log = new RecordingLogger();
            var clients = new RemoteClients(options, log);
            var run = new RunDescription("run-test", Base, new LoraOptions { Rank = 1 },
                new FederationOptions { Rounds = 2, TotalClients = options.Roster.Count, ClientsPerRound = options.Roster.Count }, new FedLlm.Runs.LocalObjective());
            var host = await FederationHost.StartAsync("127.0.0.1:0", null, clients, run, new InsecureClaimedIdentity(), () => (0, null));
            return new Harness { Clients = clients, Host = host, Log = log, Bulk = bulk };
        }

        public ServerConnection As(string id) => new(Host.Address, id, Insecure: true);

        /// <summary>Joins as <paramref name="id"/> declaring <paramref name="examples"/> examples.</summary>
        public async Task JoinAsync(string id, long examples = 100)
        {
            var connection = As(id);
            using var channel = connection.Open();
            await new FedLlm.Network.Protocol.Federation.FederationClient(channel).JoinAsync(new JoinRequest
            {
                Protocol = ProtocolInfo.Current, ClientId = id, ModelFingerprint = Base.Combined, Task = "sft", ExampleCount = examples,
            }, connection.Headers());
        }

        /// <summary>One long poll as <paramref name="id"/>: the round it was handed, or null.</summary>
        public async Task<int?> PollAsync(string id, double seconds = 0.3)
        {
            var connection = As(id);
            using var channel = connection.Open();
            var reply = await new FedLlm.Network.Protocol.Federation.FederationClient(channel).WaitForTaskAsync(new WaitForTaskRequest { WaitSeconds = seconds }, connection.Headers());
            return reply.OutcomeCase == WaitForTaskReply.OutcomeOneofCase.Task ? reply.Task.Round : null;
        }

        public async Task<SubmitReply> SubmitAsync(string sender, int round, ClientUpdate update)
        {
            var connection = As(sender);
            if (Bulk) return await new BulkClient(connection).SubmitAsync(round, update, TransferEncoding.Default, default);
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

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Each_hostile_update_is_refused_with_its_reason_logged_and_the_round_aggregates_only_the_honest_ones(bool bulk)
    {
        var nan = (double[])Honest0.Clone();
        nan[3] = double.NaN;
        var inf = (double[])Honest0.Clone();
        inf[0] = double.PositiveInfinity;
        var far = X0.Select(x => x + 5.0).ToArray(); // ‖y − x‖ = 5·√5 ≈ 11.18 > 10; honest ones are ≤ 2.1
        // One attacker per kind: a refused update excludes its sender from the round, so each kind needs its own sender.
        Harness? harness = null;
        var attacks = new (string Sender, Func<Task<SubmitReply>> Send, string Reason)[]
        {
            ("names", () => harness!.SubmitAsync("names", 0, new ClientUpdate("names", new Dictionary<string, Tensor>
                { [KeyA] = tensor(new[] { 1f, 2f }, new long[] { 1, 2 }), [OtherKey] = tensor(new[] { 1f, 2f, 3f }, new long[] { 3, 1 }) }, 10)),
                $"tensor '{OtherKey}' is not in the global adapter"),
            ("missing", () => harness!.SubmitAsync("missing", 0, new ClientUpdate("missing", new Dictionary<string, Tensor>
                { [KeyA] = tensor(new[] { 1f, 2f }, new long[] { 1, 2 }) }, 10)), $"{KeyB} is missing"),
            ("shape", () => harness!.SubmitAsync("shape", 0, new ClientUpdate("shape", new Dictionary<string, Tensor>
                { [KeyA] = tensor(new[] { 1f, 2f }, new long[] { 2, 1 }), [KeyB] = tensor(new[] { 1f, 2f, 3f }, new long[] { 3, 1 }) }, 10)),
                $"tensor '{KeyA}' has shape [2, 1], the global [1, 2]"),
            ("nan", () => harness!.SubmitAsync("nan", 0, nan), "1 NaN value"),
            ("inf", () => harness!.SubmitAsync("inf", 0, inf), "1 Inf value"),
            ("norm", () => harness!.SubmitAsync("norm", 0, far), "exceeds the bound 10"),
            ("zero", () => harness!.SubmitAsync("zero", 0, Honest0, examples: 0), "example count 0 is not positive"),
            ("future", () => harness!.SubmitAsync("future", 5, Honest0), "update for round 6 while round 1 is open"),
            ("forger", () => harness!.SubmitAsync("forger", 0, Honest0, claimed: "client-0"), "update names client 'client-0' but the sender authenticated as 'forger'"),
            ("oversize", () => harness!.SubmitAsync("oversize", 0, new ClientUpdate("oversize", Adapter(Honest0), 10,
                Metrics: Enumerable.Range(0, 8000).ToDictionary(i => $"padding_metric_{i}", i => (double)i))), "exceeds the size limit of 65536 bytes"),
        };
        await using var h = harness = await Harness.StartAsync(Options(new[] { "client-0", "client-1" }.Concat(attacks.Select(a => a.Sender)).ToArray()), bulk);
        var round0 = h.Clients.TrainRoundAsync(0, Enumerable.Range(0, 2 + attacks.Length).ToList(), h.Global, new ClientInstructions(0, 0.1));
        foreach (var (sender, send, reason) in attacks)
        {
            var reply = await send();
            Assert.False(reply.Accepted, $"{sender} was accepted");
            Assert.Contains(reason, reply.Reason);
            Assert.Contains(h.Log.Lines, l => l.Contains($"rejected update from client {sender}") && l.Contains(reason));
            Assert.Equal(1, h.Clients.Status().Clients.Single(c => c.Id == sender).Rejected);
        }

        AssertAccepted(await h.SubmitAsync("client-1", 0, Honest1, examples: 30));
        AssertAccepted(await h.SubmitAsync("client-0", 0, Honest0, examples: 10));
        // Every sender refused for its update's content is out of the round; "future" and "forger", refused on the header
        // before any tensor was read, still hold their task, fall silent, and are left out two seconds later.
        var updates = await round0.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(new[] { "client-0", "client-1" }, updates.Select(u => u.ClientId));
        Assert.Equal(Honest0, Flat(updates[0].Weights));
        Assert.Equal(new[] { 10L, 30L }, updates.Select(u => u.ExampleCount));
        Assert.Contains(h.Log.Lines, l => l.Contains("client future left out: missed heartbeats"));
        Assert.Contains(h.Log.Lines, l => l.Contains("client forger left out: missed heartbeats"));
        Assert.Contains(h.Log.Lines, l => l.Contains("refused: inf,missing,names,nan,norm,oversize,shape,zero"));

        // Round 1 samples client-0 and client-1 only.
        var round1 = h.Clients.TrainRoundAsync(1, new[] { 0, 1 }, h.Global, new ClientInstructions(1, 0.1));
        var replayed = await h.SubmitAsync("client-0", 0, Honest0);
        Assert.Contains("update for round 1 while round 2 is open (late or replayed)", replayed.Reason);
        AssertAccepted((await h.SubmitAsync("client-0", 1, Honest1)));
        Assert.Contains("client-0 already submitted round 2 (replay)", (await h.SubmitAsync("client-0", 1, Honest0)).Reason);
        Assert.Contains("nan was not given round 2's task", (await h.SubmitAsync("nan", 1, Honest0)).Reason);
        AssertAccepted((await h.SubmitAsync("client-1", 1, Honest0, examples: 30)));
        var second = await round1.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(Honest1, Flat(second.Single(u => u.ClientId == "client-0").Weights));
        Assert.Contains(h.Log.Lines, l => l.Contains("round 1: rejected update from client client-0: update for round 1 while round 2 is open"));
        foreach (var u in updates.Concat(second)) AdapterTensors.Dispose(u.Weights);
    }

    [Fact]
    public async Task A_refused_client_is_not_handed_the_task_again_and_the_round_closes_once_the_others_have_submitted()
    {
        // A long heartbeat timeout and deadline: the round may close early only because nobody is left to wait for.
        var options = Options("a", "b", "mallory") with { RoundDeadline = TimeSpan.FromSeconds(120), HeartbeatTimeout = TimeSpan.FromSeconds(60) };
        await using var h = await Harness.StartAsync(options);
        foreach (var id in new[] { "a", "b", "mallory" }) await h.JoinAsync(id);
        var round = h.Clients.TrainRoundAsync(0, new[] { 0, 1, 2 }, h.Global, new ClientInstructions(0, 0.1));
        Assert.Equal(0, await h.PollAsync("mallory"));
        var nan = (double[])Honest0.Clone();
        nan[0] = double.NaN;
        var refused = await h.SubmitAsync("mallory", 0, nan);
        Assert.Contains("1 NaN value", refused.Reason);
        Assert.Null(await h.PollAsync("mallory"));
        Assert.Contains("was refused already", (await h.SubmitAsync("mallory", 0, Honest0)).Reason);
        Assert.Equal("refused", h.Clients.Status().Clients.Single(c => c.Id == "mallory").State);
        AssertAccepted(await h.SubmitAsync("a", 0, Honest0));
        AssertAccepted(await h.SubmitAsync("b", 0, Honest1));
        var updates = await round.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new[] { "a", "b" }, updates.Select(u => u.ClientId));
        // The re-send is refused (and counted) without touching the round or the backoff any further.
        Assert.Equal(2, h.Clients.Status().Clients.Single(c => c.Id == "mallory").Rejected);
        foreach (var u in updates) AdapterTensors.Dispose(u.Weights);
    }

    [Fact]
    public async Task Repeated_refusals_back_off_and_a_round_that_needs_the_refused_client_hands_it_the_task_after_its_backoff()
    {
        var options = Options("a", "mallory") with { MinUpdates = 2, RefusalBackoff = TimeSpan.FromSeconds(3), HeartbeatTimeout = TimeSpan.FromSeconds(60) };
        await using var h = await Harness.StartAsync(options);
        foreach (var id in new[] { "a", "mallory" }) await h.JoinAsync(id);
        var nan = (double[])Honest0.Clone();
        nan[1] = double.NaN;
        var round = h.Clients.TrainRoundAsync(0, new[] { 0, 1 }, h.Global, new ClientInstructions(0, 0.1));
        AssertAccepted(await h.SubmitAsync("a", 0, Honest0));
        Assert.False((await h.SubmitAsync("mallory", 0, nan)).Accepted);
        // Without mallory the round cannot reach two updates: after 3 s (first refusal) it gets the task again.
        // The backoff is long enough that a loaded test machine does not reach its end during the first short poll.
        Assert.Null(await h.PollAsync("mallory", 0.3));
        Assert.Equal(0, await h.PollAsync("mallory", 10));
        Assert.False((await h.SubmitAsync("mallory", 0, nan)).Accepted);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(0, await h.PollAsync("mallory", 20));
        // The second refusal in a row waits twice as long.
        Assert.InRange(clock.Elapsed.TotalSeconds, 4.5, 20);
        AssertAccepted(await h.SubmitAsync("mallory", 0, Honest1));
        var updates = await round.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new[] { "a", "mallory" }, updates.Select(u => u.ClientId));
        Assert.Equal(2, h.Clients.Status().Clients.Single(c => c.Id == "mallory").Rejected);
        foreach (var u in updates) AdapterTensors.Dispose(u.Weights);
    }

    [Fact]
    public async Task An_example_count_above_what_the_client_declared_at_join_is_refused()
    {
        await using var h = await Harness.StartAsync(Options("a", "mallory") with { MinUpdates = 1 });
        await h.JoinAsync("mallory", examples: 12);
        await h.JoinAsync("a", examples: 30);
        var round = h.Clients.TrainRoundAsync(0, new[] { 0, 1 }, h.Global, new ClientInstructions(0, 0.1));
        var inflated = await h.SubmitAsync("mallory", 0, Honest0, examples: 9_000_000_000_000_000_000);
        Assert.Contains("example count 9000000000000000000 exceeds the server's limit of 12", inflated.Reason);
        AssertAccepted(await h.SubmitAsync("a", 0, Honest1, examples: 30));
        var updates = await round.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new[] { 30L }, updates.Select(u => u.ExampleCount));
        foreach (var u in updates) AdapterTensors.Dispose(u.Weights);
    }

    [Fact]
    public async Task An_update_far_above_the_rounds_median_norm_is_refused_at_the_close()
    {
        var options = Options("a", "b", "c", "mallory") with { MinUpdates = 3, Limits = UpdateLimits.None, MaxUpdateNormRatio = 3 };
        await using var h = await Harness.StartAsync(options);
        var round = h.Clients.TrainRoundAsync(0, new[] { 0, 1, 2, 3 }, h.Global, new ClientInstructions(0, 0.1));
        // Honest norms ≈ 1.1, 2.1, 1.6; mallory's step is 100 × the first honest one's.
        var scaled = X0.Zip(Honest0, (x, y) => x + 100 * (y - x)).ToArray();
        AssertAccepted(await h.SubmitAsync("mallory", 0, scaled));
        AssertAccepted(await h.SubmitAsync("a", 0, Honest0));
        AssertAccepted(await h.SubmitAsync("b", 0, Honest1));
        AssertAccepted(await h.SubmitAsync("c", 0, X0.Zip(Honest0, (x, y) => x + 1.5 * (y - x)).ToArray()));
        var updates = await round.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new[] { "a", "b", "c" }, updates.Select(u => u.ClientId));
        Assert.Contains(h.Log.Lines, l => l.Contains("rejected update from client mallory") && l.Contains("exceeds 3 × the round's median norm"));
        foreach (var u in updates) AdapterTensors.Dispose(u.Weights);
    }

    [Fact]
    public async Task One_upload_at_a_time_per_client_and_uploads_beyond_the_memory_budget_are_told_to_retry()
    {
        // A budget of one update (the 5-value adapter is 20 bytes decoded): a second client's upload must wait.
        var options = Options("a", "b") with { MinUpdates = 2, UploadMemoryBudget = 20 };
        await using var h = await Harness.StartAsync(options);
        var round = h.Clients.TrainRoundAsync(0, new[] { 0, 1 }, h.Global, new ClientInstructions(0, 0.1));
        // Two uploads held open (header sent, body not yet) from the same client, and one from another.
        var first = h.Clients.BeginSubmission("a", 0, "a", out _, out _);
        Assert.NotNull(first);
        Assert.Null(h.Clients.BeginSubmission("a", 0, "a", out string twice, out var noRetry));
        Assert.Contains("an upload from client a is already in flight", twice);
        Assert.Equal(TimeSpan.Zero, noRetry);
        var busy = await h.SubmitAsync("b", 0, Honest1);
        Assert.False(busy.Accepted);
        Assert.True(busy.RetryAfterSeconds > 0, busy.Reason);
        Assert.Contains("upload memory budget", busy.Reason);
        Assert.Equal(0, h.Clients.Status().Clients.Single(c => c.Id == "b").Rejected);
        first!.Dispose();
        AssertAccepted(await h.SubmitAsync("b", 0, Honest1));
        AssertAccepted(await h.SubmitAsync("a", 0, Honest0));
        var updates = await round.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(2, updates.Count);
        foreach (var u in updates) AdapterTensors.Dispose(u.Weights);
    }

    [Fact]
    public async Task The_operator_aborts_a_round_and_removes_a_client()
    {
        var options = Options("a", "b", "mallory") with { MinUpdates = 2, HeartbeatTimeout = TimeSpan.FromSeconds(60) };
        await using var h = await Harness.StartAsync(options);
        foreach (var id in new[] { "a", "b", "mallory" }) await h.JoinAsync(id);
        var round = h.Clients.TrainRoundAsync(0, new[] { 0, 1, 2 }, h.Global, new ClientInstructions(0, 0.1));
        AssertAccepted(await h.SubmitAsync("a", 0, Honest0));
        Assert.Contains("round 1 aborted: 1 updates dropped", h.Clients.AbortRound());
        // a trains round 0 again: its earlier update no longer counts.
        Assert.Equal(0, await h.PollAsync("a"));
        Assert.Contains("client 'mallory' removed", h.Clients.RemoveClient("mallory"));
        var removed = await Assert.ThrowsAsync<RpcException>(() => h.PollAsync("mallory"));
        Assert.Equal(StatusCode.PermissionDenied, removed.StatusCode);
        Assert.Contains("removed from this run by the operator", removed.Status.Detail);
        AssertAccepted(await h.SubmitAsync("a", 0, Honest1));
        AssertAccepted(await h.SubmitAsync("b", 0, Honest0));
        var updates = await round.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new[] { "a", "b" }, updates.Select(u => u.ClientId));
        Assert.Equal(Honest1, Flat(updates[0].Weights));
        // Removal is committed with the registry, so a restarted server keeps mallory out.
        var state = h.Clients.SnapshotState();
        using var restarted = new RemoteClients(options, new RecordingLogger());
        restarted.RestoreState(state);
        Assert.True(restarted.IsRemoved("mallory"));
        AdapterTensors.Dispose(state);
        foreach (var u in updates) AdapterTensors.Dispose(u.Weights);
    }

    static void AssertAccepted(SubmitReply reply) => Assert.True(reply.Accepted, $"refused: {reply.Reason}");

    [Fact]
    public async Task A_client_that_holds_its_task_past_the_deadline_is_left_out_and_its_late_update_refused()
    {
        var options = Options("a", "b", "slow") with { RoundDeadline = TimeSpan.FromSeconds(3), HeartbeatTimeout = TimeSpan.FromSeconds(60) };
        await using var h = await Harness.StartAsync(options);
        var round = h.Clients.TrainRoundAsync(0, new[] { 0, 1, 2 }, h.Global, new ClientInstructions(0, 0.1));
        await h.JoinAsync("slow");
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
        Assert.Contains("update for round 1 arrived while no round is open (late or replayed)", late.Reason);
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
        var version = await Join("a", 1, Base.Combined);
        Assert.Equal(StatusCode.FailedPrecondition, version.StatusCode);
        Assert.Contains($"the client speaks fedllm.federation v1.3, this server v{ProtocolInfo.Major}.{ProtocolInfo.Minor}", version.Status.Detail);
        var model = await Join("a", 2, "another-base");
        Assert.Contains("base model mismatch", model.Status.Detail);
        var task = await Join("a", 2, Base.Combined, "dpo");
        Assert.Equal(StatusCode.FailedPrecondition, task.StatusCode);
        Assert.Contains("the client's data is for 'dpo', this run trains 'sft'", task.Status.Detail);
        var stranger = await Join("eve", 2, Base.Combined);
        Assert.Equal(StatusCode.PermissionDenied, stranger.StatusCode);
        Assert.Contains("'eve' is not on this run's roster", stranger.Status.Detail);
    }

    /// <summary>Keeps every formatted log line, so tests can check what was logged against whom.</summary>
    internal sealed class RecordingLogger : ILogger
    {
        readonly ConcurrentQueue<string> lines = new();
        public IReadOnlyList<string> Lines => lines.ToArray();

        /// <summary>The first line matching <paramref name="match"/>, waiting for it: a server may log a refusal just
        /// after the client has already seen it.</summary>
        public async Task<string> WaitForAsync(Func<string, bool> match, double seconds = 20)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (true)
            {
                if (Lines.FirstOrDefault(match) is { } line) return line;
                if (clock.Elapsed.TotalSeconds > seconds)
                    throw new Xunit.Sdk.XunitException($"no matching log line within {seconds} s; the log:\n{string.Join("\n", Lines)}");
                await Task.Delay(20);
            }
        }
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue($"{logLevel}: {formatter(state, exception)}");
    }
}
