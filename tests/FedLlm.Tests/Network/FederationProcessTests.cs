using FedLlm.Federation;
using FedLlm.Tests.Federation;

namespace FedLlm.Tests.Network;

/// <summary>
/// Real processes on 127.0.0.1: `fedllm server` and `fedllm client`s started from the built CLI, as a user starts them.
/// </summary>
public class FederationProcessTests
{
    static readonly TimeSpan Patience = TimeSpan.FromSeconds(240);

    static string Address(CliProcess server) => server.WaitFor(@"listening on (http://127\.0\.0\.1:\d+)", Patience).Groups[1].Value;

    [Fact]
    public void Three_client_processes_run_three_scaffold_rounds_and_end_bit_identical_to_the_simulation()
    {
        // SCAFFOLD with kept optimizer moments: the server control travels to clients and control deltas back, and
        // each client carries c_i and AdamW moments on its own disk from round to round.
        using var run = new TinyFederation(clients: 3, strategy: "scaffold", rounds: 3, keepOptimizerState: true);
        using var server = run.StartServer(run.WriteServerYaml());
        string address = Address(server);
        var clients = Enumerable.Range(0, 3).Select(c => run.StartClient(c, address)).ToList();
        try
        {
            Assert.Equal(0, server.WaitForExit(Patience));
            foreach (var client in clients) Assert.Equal(0, client.WaitForExit(Patience));
        }
        finally
        {
            foreach (var client in clients) client.Dispose();
        }

        var network = run.FinalAdapter();
        var simulated = run.Simulate();
        FederationTestData.AssertBitEqual(simulated, network, "network vs simulation");
        Assert.Contains(network.Values, t => t.abs().sum().item<float>() > 0);

        var rounds = run.Metrics();
        Assert.Equal(new[] { 0, 1, 2 }, rounds.Select(r => r.Round));
        foreach (var r in rounds) Assert.Equal(run.Roster, r.Clients.Order(StringComparer.Ordinal));
        // Wire bytes: round 0 sends each client the adapter A (SCAFFOLD's c has no tensors yet), later rounds A and c;
        // every round each client returns y_i and Δc_i. Framing adds a little to the fp32 payloads, never less.
        long adapterBytes = AdapterTensors.Bytes(network);
        // Each tensor's header (name, shape, dtype, encoding, size) and protobuf framing: under its name plus 64 bytes.
        long headerBytes = network.Keys.Sum(k => k.Length + 64L);
        AssertBetween(rounds[0].BytesSent, 3 * adapterBytes, 3 * headerBytes, "round 0 sent");
        AssertBetween(rounds[1].BytesSent, 6 * adapterBytes, 6 * headerBytes, "round 1 sent");
        foreach (var r in rounds) AssertBetween(r.BytesReceived, 6 * adapterBytes, 6 * headerBytes + 3 * 256, $"round {r.Round} received");
        Assert.True(File.Exists(Path.Combine(run.Output, "rounds.png")));
        Assert.True(Directory.Exists(Path.Combine(run.Output, "rounds", "round-2")));
    }

    static void AssertBetween(long actual, long payload, long overhead, string what) =>
        Assert.True(actual >= payload && actual <= payload + overhead, $"{what}: {actual} bytes for a payload of {payload} (+ at most {overhead})");
}
