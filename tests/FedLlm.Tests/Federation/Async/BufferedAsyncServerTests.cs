using FedLlm.Federation;
using FedLlm.Federation.Async;
using FedLlm.Federation.Strategies;
using FedLlm.Tests.Data;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation.Async;

/// <summary>The asynchronous loop on scripted clients whose update y = ½·x + d_i·(1 + n)·lr/lr₀ depends on the global
/// it starts from, on the client, on the client's task number n and on the learning rate, so a wrong base version, seed
/// or schedule changes the numbers.</summary>
public sealed class BufferedAsyncServerTests
{
    static readonly double[][] Shifts = [[0.1, 0.2, 0.3, 0.4, 0.5], [-1.0, 1.0, 2.0, -2.0, 0.5], [0.3, -0.7, 0.0, 0.9, -0.2]];
    const double PeakLearningRate = 0.1;

    /// <summary>Each client's y = ½·x + d_i·(1 + n)·lr/lr₀, with n = the instructions' round (the client's task number).</summary>
    sealed class ScriptedClients : IClientExecutor
    {
        public List<(int Client, int Round, double LearningRate)> Calls { get; } = new();

        public Task<IReadOnlyList<ClientUpdate>> TrainRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
            ClientInstructions instructions, CancellationToken cancellationToken = default)
        {
            var x = Flat(global);
            var updates = clients.Select(i =>
            {
                Calls.Add((i, instructions.Round, instructions.LearningRate));
                double scale = (1 + instructions.Round) * instructions.LearningRate / PeakLearningRate;
                var y = x.Select((xi, k) => 0.5 * xi + Shifts[i][k] * scale).ToArray();
                return new ClientUpdate($"client-{i}", Adapter(y), 10, new Dictionary<string, double> { ["train_loss"] = i + 0.5 });
            }).ToList();
            return Task.FromResult<IReadOnlyList<ClientUpdate>>(updates);
        }

        public IReadOnlyDictionary<string, Tensor> SnapshotState() => new Dictionary<string, Tensor>();
        public void RestoreState(IReadOnlyDictionary<string, Tensor> state) { }
    }

    static FederationOptions Federation(int clients, int perRound, int rounds, int localSteps = 1) => new()
    {
        Rounds = rounds, TotalClients = clients, ClientsPerRound = perRound, LocalSteps = localSteps, LearningRate = PeakLearningRate,
        MinLearningRate = PeakLearningRate, Seed = 5, EvaluateEvery = 0,
    };

    static double[] Add(double[] a, double[] b, double s = 1) => a.Select((v, i) => v + s * b[i]).ToArray();
    static double[] Scale(double[] a, double s) => a.Select(v => v * s).ToArray();

    [Fact]
    public async Task Two_clients_with_one_update_stale_by_one_version_weigh_one_and_one_over_root_two()
    {
        // Prepare: client 0 takes 1 unit per task, client 1 takes 3; both train at once, K = 2, η_g = 1.
        // t=1: client 0 (task 0, from v0) arrives, restarts from v0 (task 1); t=2: it arrives → v1 = mean of two fresh deltas;
        // it restarts from v1 (task 2). t=3: client 1 (from v0, stale by 1) and client 0 (from v1, fresh) → v2.
        var options = Federation(clients: 2, perRound: 2, rounds: 2);
        var async = new AsyncOptions { BufferSize = 2, Concurrency = 2, ClientSpeeds = [1, 3] };
        var clients = new ScriptedClients();
        using var server = new BufferedAsyncServer(async, options, Adapter(X0), clients);

        // Execute
        await server.RunAsync();

        // Assert: by hand, Δ = y − x_base = d_i·(1 + n) − ½·x_base.
        var x0 = X0;
        var deltaA = Add(Shifts[0], x0, -0.5);                       // client 0, task 0, base v0
        var deltaB = Add(Scale(Shifts[0], 2), x0, -0.5);             // client 0, task 1, base v0
        var x1 = Add(x0, Scale(Add(deltaA, deltaB), 0.5));
        var stale = Add(Shifts[1], x0, -0.5);                        // client 1, task 0, base v0, τ = 1
        var fresh = Add(Scale(Shifts[0], 3), x1, -0.5);              // client 0, task 2, base v1, τ = 0
        var x2 = Add(x1, Scale(Add(Scale(stale, 1 / Math.Sqrt(2)), fresh), 0.5));
        var actual = Flat(server.Global);
        for (int i = 0; i < x2.Length; i++) Assert.Equal(x2[i], actual[i], 5);

        var second = server.History[1];
        Assert.Equal(3.0, second.VirtualTime);
        Assert.Equal(["client-1", "client-0"], second.Clients);
        var updates = second.Async!.Updates;
        Assert.Equal([0, 1], updates.Select(u => u.BaseVersion));
        Assert.Equal([1, 0], updates.Select(u => u.Staleness));
        Assert.Equal(1 / Math.Sqrt(2), updates[0].Weight, 12);
        Assert.Equal((0.0, 3.0), (updates[0].StartedAt, updates[0].FinishedAt));
        Assert.Equal(2.0, server.History[0].VirtualTime);
        Assert.Equal([(0, 0), (0, 1), (0, 2), (1, 0)], clients.Calls.Take(4).Select(c => (c.Client, c.Round)).Order());
    }

    [Fact]
    public async Task With_max_staleness_zero_the_stale_arrival_is_dropped_and_the_next_fresh_one_fills_the_buffer()
    {
        // Prepare: the two-speed run above with τ_max = 0. At t=3 client 1's update from v0 (τ = 1) arrives first (it
        // started first) and is dropped; client 0's task 2 (from v1) is buffered; both restart from v1, and client 0's
        // task 3 arrives at t=4 and completes version 2.
        var options = Federation(clients: 2, perRound: 2, rounds: 2);
        var async = new AsyncOptions { BufferSize = 2, Concurrency = 2, ClientSpeeds = [1, 3], MaxStaleness = 0 };
        using var server = new BufferedAsyncServer(async, options, Adapter(X0), new ScriptedClients());

        // Execute
        await server.RunAsync();

        // Assert: x2 = x1 + ½((3·d0 − ½x1) + (4·d0 − ½x1)); with the stale update it would hold d1.
        var x0 = X0;
        var x1 = Add(x0, Scale(Add(Add(Shifts[0], x0, -0.5), Add(Scale(Shifts[0], 2), x0, -0.5)), 0.5));
        var x2 = Add(x1, Scale(Add(Add(Scale(Shifts[0], 3), x1, -0.5), Add(Scale(Shifts[0], 4), x1, -0.5)), 0.5));
        var actual = Flat(server.Global);
        for (int i = 0; i < x2.Length; i++) Assert.Equal(x2[i], actual[i], 5);
        var second = server.History[1];
        Assert.Equal(["client-0", "client-0"], second.Clients);
        Assert.Equal([0, 0], second.Async!.Updates.Select(u => u.Staleness));
        Assert.Equal(4.0, second.VirtualTime);
    }

    [Fact]
    public async Task With_equal_speeds_and_k_equal_to_the_clients_per_round_a_version_is_a_fedavg_round()
    {
        // Prepare: 3 clients, all of them every round (so the synchronous sample and the asynchronous refill agree), equal
        // example counts (FedAvg's n_i-weighted mean is then FedBuff's uniform 1/K), η_g = 1, a cosine learning rate.
        var options = Federation(clients: 3, perRound: 3, rounds: 3) with { MinLearningRate = 0.01 };
        using var sync = new FederationServer(new FedAvg(), options, Adapter(X0), new ScriptedClients());
        using var async = new BufferedAsyncServer(new AsyncOptions(), options, Adapter(X0), new ScriptedClients());

        // Execute
        await sync.RunAsync();
        await async.RunAsync();

        // Assert: every version equals the round: x + (1/K)·Σ(y_i − x) = (1/K)·Σ y_i, equal up to float32 rounding (the
        // two sums run in different orders and FedBuff adds the mean delta to x); staleness 0 throughout.
        var a = Flat(async.Global);
        var s = Flat(sync.Global);
        for (int i = 0; i < a.Length; i++) Assert.Equal(s[i], a[i], 5);
        Assert.All(async.History.SelectMany(r => r.Async!.Updates), u => Assert.Equal(0, u.Staleness));
        Assert.Equal([1.0, 2.0, 3.0], async.History.Select(r => r.VirtualTime!.Value));
        Assert.Equal(sync.History.Select(r => r.LearningRate), async.History.Select(r => r.LearningRate));
        Assert.NotEqual(X0[0], a[0], 3);
    }

    [Fact]
    public async Task The_order_of_events_is_a_function_of_the_seed_and_the_speeds()
    {
        var options = Federation(clients: 3, perRound: 2, rounds: 5, localSteps: 2);
        var async = new AsyncOptions { BufferSize = 2, Concurrency = 2, ClientSpeeds = [1, 2.5, 1.5] };
        async Task<List<string>> Trace(long seed)
        {
            using var server = new BufferedAsyncServer(async, options with { Seed = seed }, Adapter(X0), new ScriptedClients());
            await server.RunAsync();
            return server.History.Select(r => $"{r.VirtualTime}:{string.Join(",", r.Async!.Updates.Select(u => $"{u.Client}@{u.BaseVersion}/{u.FinishedAt}"))}").ToList();
        }
        var first = await Trace(5);
        Assert.Equal(first, await Trace(5));
        Assert.True(first.Zip(first.Skip(1)).All(p => double.Parse(p.First.Split(':')[0]) <= double.Parse(p.Second.Split(':')[0])));
        Assert.NotEqual(first, await Trace(6)); // another seed refills slots with other clients
    }

    [Fact]
    public async Task A_run_resumed_after_a_committed_version_ends_with_the_same_adapter_bit_for_bit()
    {
        // Prepare: tasks are in flight at every commit (3 clients, 2 at a time, unequal speeds).
        var options = Federation(clients: 3, perRound: 2, rounds: 6, localSteps: 2) with { MinLearningRate = 0.01 };
        var async = new AsyncOptions { BufferSize = 2, Concurrency = 2, ClientSpeeds = [1, 2.5, 1.5], ServerLearningRate = 0.8 };
        using var dir = new TempDirectory();
        using var whole = new BufferedAsyncServer(async, options, Adapter(X0), new ScriptedClients(), new RunStore(Path.Combine(dir.Path, "whole")));
        await whole.RunAsync();

        // Execute: stop after 3 versions, then resume in a new server from the store.
        var store = new RunStore(Path.Combine(dir.Path, "split"));
        using (var first = new BufferedAsyncServer(async, options with { StopAfterRounds = 3 }, Adapter(X0), new ScriptedClients(), store))
            await first.RunAsync();
        using var resumed = new BufferedAsyncServer(async, options, Adapter(X0), new ScriptedClients(), store);
        Assert.True(resumed.TryResume());
        Assert.Equal(3, resumed.Version);
        await resumed.RunAsync();

        // Assert
        Assert.Equal(Flat(whole.Global), Flat(resumed.Global));
        Assert.Equal(whole.History.Select(r => r.VirtualTime), resumed.History.Select(r => r.VirtualTime));
        Assert.Equal(whole.History.Select(r => string.Join(",", r.Clients)), resumed.History.Select(r => string.Join(",", r.Clients)));
        Assert.Contains(whole.History, r => r.Async!.Updates.Any(u => u.Staleness > 0));
        Assert.Equal(6, MetricsJsonl.Read(store.MetricsPath).Count);
    }

    [Fact]
    public void Options_that_do_not_fit_the_federation_are_refused_with_every_problem()
    {
        var options = Federation(clients: 3, perRound: 2, rounds: 2);
        var bad = new AsyncOptions { Concurrency = 4, ClientSpeeds = [1, 0], ServerLearningRate = 0, BufferSize = 0 };
        var e = Assert.Throws<ArgumentException>(() => new BufferedAsyncServer(bad, options, Adapter(X0), new ScriptedClients()));
        Assert.Contains("async.concurrency 4 exceeds the 3 clients", e.Message);
        Assert.Contains("async.client_speeds lists 2 factors for 3 clients", e.Message);
        Assert.Contains("async.client_speeds: 0 is not a finite positive speed factor", e.Message);
        Assert.Contains("async.server_learning_rate", e.Message);
        Assert.Contains("async.buffer_size must be positive", e.Message);
        Assert.Equal([5.0, 5.0, 1.0], new AsyncOptions { SlowClients = 2, SlowFactor = 5 }.SpeedsFor(3));
    }

    [Fact]
    public void A_synchronous_round_lasts_as_long_as_its_slowest_sampled_client()
    {
        var options = Federation(clients: 5, perRound: 2, rounds: 4, localSteps: 5);
        double[] speeds = [5, 1, 1, 1, 1];
        var timed = new SynchronousVirtualTime(new FedAvg(), options, speeds);
        double expected = 0;
        for (int r = 0; r < 4; r++)
        {
            expected += RoundSchedule.SampleClients(r, options).Contains(0) ? 25 : 5;
            Assert.Equal(expected, timed.TimeAfter(r));
        }
        var record = timed.Annotate(new RoundRecord
        {
            Round = 3, LearningRate = 0.1, Clients = [], ClientLoss = new Dictionary<string, double>(), UpdateNorms = new Dictionary<string, double>(),
            GlobalStepNorm = 0, BytesSent = 0, BytesReceived = 0, Seconds = 0,
        });
        Assert.Equal(expected, record.VirtualTime);
    }
}
