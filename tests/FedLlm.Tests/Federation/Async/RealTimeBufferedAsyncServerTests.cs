using FedLlm.Federation;
using FedLlm.Federation.Async;
using FedLlm.Tests.Data;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation.Async;

/// <summary>FedBuff's real-time loop (the network server's) on a scripted pool: updates arrive in a given order with
/// given base versions and deltas, so staleness, weights, the staleness bound and resume are checked against numbers
/// worked out by hand.</summary>
public sealed class RealTimeBufferedAsyncServerTests
{
    /// <summary>Hands out the scripted updates in order; records what was published and how many were asked for.</summary>
    sealed class ScriptedPool(params (string Client, int Base, double[] Delta)[] script) : IAsyncClientPool
    {
        readonly Queue<(string Client, int Base, double[] Delta)> queue = new(script);
        public List<(int Version, double[] Global, double LearningRate)> Published { get; } = new();
        public List<int> Asked { get; } = new();
        public double? Restored { get; private set; }

        public void Publish(int version, IReadOnlyDictionary<string, Tensor> global, ClientInstructions instructions) =>
            Published.Add((version, Flat(global), instructions.LearningRate));

        public Task<IReadOnlyList<ArrivedUpdate>> TakeAsync(int count, CancellationToken cancellationToken = default)
        {
            Asked.Add(count);
            var taken = Enumerable.Range(0, count).Select(_ => queue.Dequeue())
                .Select(s => new ArrivedUpdate(s.Client, s.Base, Adapter(s.Delta), 10, 0.5, Math.Sqrt(s.Delta.Sum(d => d * d)), 100, 0, 1)).ToList();
            return Task.FromResult<IReadOnlyList<ArrivedUpdate>>(taken);
        }

        public IReadOnlyDictionary<string, Tensor> SnapshotState() => new Dictionary<string, Tensor> { ["registry/probe"] = tensor(new[] { 7.0 }) };

        public void RestoreState(IReadOnlyDictionary<string, Tensor> state) => Restored = state["registry/probe"].data<double>()[0];
    }

    static FederationOptions Federation(int rounds) => new()
    {
        Rounds = rounds, TotalClients = 3, ClientsPerRound = 3, LocalSteps = 1, LearningRate = 0.1, MinLearningRate = 0.01, Seed = 5, EvaluateEvery = 0,
    };

    // x0 = (1, −2, 0.5, 0, 3). Version 0: two fresh deltas → x1 = x0 + ½(dA + dB) = (2, 0, 0.5, 0, 3).
    static readonly double[] DA = [2, 0, 0, 0, 0], DB = [0, 4, 0, 0, 0], DC = [0, 0, 2, 0, 0], DD = [0, 0, 0, 2, 0], DE = [0, 0, 0, 0, 4];
    static readonly double[] X1 = [2, 0, 0.5, 0, 3];

    static void AssertClose(double[] expected, IReadOnlyDictionary<string, Tensor> actual)
    {
        var flat = Flat(actual);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], flat[i], 5);
    }

    [Fact]
    public async Task An_update_one_version_stale_weighs_one_over_root_two_and_each_version_is_published_before_it_is_collected()
    {
        // Prepare: client-2's update was trained from version 0 and arrives while version 1 is collected (τ = 1).
        var pool = new ScriptedPool(("client-0", 0, DA), ("client-1", 0, DB), ("client-2", 0, DC), ("client-0", 1, DD));
        var options = Federation(rounds: 2);
        using var server = new RealTimeBufferedAsyncServer(new AsyncOptions { BufferSize = 2 }, options, Adapter(X0), pool);

        // Execute
        await server.RunAsync();

        // Assert: x2 = x1 + ½(dC/√2 + dD) = (2, 0, 0.5 + 1/√2, 1, 3).
        AssertClose([2, 0, 0.5 + 1 / Math.Sqrt(2), 1, 3], server.Global);
        Assert.Equal([0, 1], pool.Published.Select(p => p.Version));
        Assert.Equal(X1, pool.Published[1].Global.Select(v => Math.Round(v, 5)));
        Assert.Equal(RoundSchedule.LearningRate(1, options), pool.Published[1].LearningRate);
        var second = server.History[1];
        Assert.Equal(["client-2", "client-0"], second.Clients);
        Assert.Equal([1, 0], second.Async!.Updates.Select(u => u.Staleness));
        Assert.Equal(1 / Math.Sqrt(2), second.Async.Updates[0].Weight, 12);
        Assert.Equal(1.0, second.Async.Updates[1].Weight);
        Assert.Equal(200, second.BytesReceived);
    }

    [Fact]
    public async Task An_update_past_max_staleness_is_dropped_and_the_pool_is_asked_for_one_more()
    {
        // Prepare: τ_max = 0, so client-2's update from version 0 cannot enter version 1's aggregation.
        var pool = new ScriptedPool(("client-0", 0, DA), ("client-1", 0, DB), ("client-2", 0, DC), ("client-0", 1, DD), ("client-1", 1, DE));
        var dropped = new List<string>();
        using var server = new RealTimeBufferedAsyncServer(new AsyncOptions { BufferSize = 2, MaxStaleness = 0 }, Federation(rounds: 2), Adapter(X0), pool,
            log: dropped.Add);

        // Execute
        await server.RunAsync();

        // Assert: x2 = x1 + ½(dD + dE) = (2, 0, 0.5, 1, 5); with dC it would differ in the third coordinate.
        AssertClose([2, 0, 0.5, 1, 5], server.Global);
        Assert.Equal([2, 2, 1], pool.Asked);
        Assert.Equal(["client-0", "client-1"], server.History[1].Clients);
        Assert.Contains("client-2", Assert.Single(dropped));
    }

    [Fact]
    public async Task A_restarted_server_resumes_from_the_committed_version_and_restores_the_pool_state()
    {
        // Prepare: version 1 committed to a store, then the process "dies" (the server is disposed).
        using var temp = new TempDirectory();
        var options = Federation(rounds: 2);
        var first = new ScriptedPool(("client-0", 0, DA), ("client-1", 0, DB));
        using (var server = new RealTimeBufferedAsyncServer(new AsyncOptions { BufferSize = 2 }, options, Adapter(X0), first, new RunStore(temp.Path)))
            await server.RunVersionAsync();

        // Execute: a new server on the same store; the update of version 0 buffered before the crash is not replayed.
        var second = new ScriptedPool(("client-2", 0, DC), ("client-0", 1, DD));
        using var resumed = new RealTimeBufferedAsyncServer(new AsyncOptions { BufferSize = 2 }, options, Adapter(X0), second, new RunStore(temp.Path));
        Assert.True(resumed.TryResume());
        await resumed.RunAsync();

        // Assert
        Assert.Equal(7.0, second.Restored);
        Assert.Equal([1], second.Published.Select(p => p.Version));
        AssertClose([2, 0, 0.5 + 1 / Math.Sqrt(2), 1, 3], resumed.Global);
        Assert.Equal(2, resumed.History.Count);
        Assert.Equal(2, MetricsJsonl.Read(Path.Combine(temp.Path, "metrics.jsonl")).Count);
    }
}
