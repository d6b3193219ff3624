using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FedLlm.Federation;
using FedLlm.Federation.Transfer;
using FedLlm.Network.Client;
using FedLlm.Network.Protocol;
using FedLlm.Network.Server;
using FedLlm.Peft;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>
/// The network path of an adapter: a Llama-2-7B-shaped LoRA at r 32 (32 layers, q k v o gate up down, 224 tensors,
/// 80 M parameters, 320 MB in fp32) goes from a FedLlm server to a client (the fetch of the global) and back (the
/// update, with the server's validation) on 127.0.0.1, once per transfer encoding and channel: the gRPC calls
/// (FetchGlobal/SubmitUpdate) or the bulk channel on the same port. Each (encoding, channel) runs in a child process so
/// its peak RSS (server and client together, plus the adapter copies both hold) is its own; in it, the transfer is
/// repeated for --repetitions rounds (a federation's steady state; the first round also pays the JIT and fresh
/// memory) and the median round is reported beside the first. With --tls the transfer runs over mutual TLS with a
/// provisioning kit made for the run (the deployed setting), else over plain text (h2c for gRPC).
/// </summary>
/// <remarks>dotnet run -c Release --project bench/FedLlm.Bench -- transfer [--encodings fp32,bf16,...] [--channels grpc,bulk]
/// [--repetitions 5] [--layers 32] [--rank 32] [--tls]</remarks>
public static class TransferBenchmark
{
    static readonly string[] DefaultEncodings = { "fp32", "fp32+gzip", "bf16", "bf16+gzip", "fp16", "int8", "int8+gzip" };

    /// <param name="DownCpuSeconds">CPU time of the whole process (server and client) during the download (median
    /// round): on a busy machine, adapter MB per CPU second shows what the code costs, apart from how much CPU it was
    /// given.</param>
    public sealed record Result(string Encoding, string Channel, bool Tls, int Repetitions, double AdapterMB, double WireDownMB, double DownSeconds, double DownCpuSeconds,
        double WireUpMB, double UpSeconds, double UpCpuSeconds, double FirstDownSeconds, double FirstUpSeconds, double PeakRssMB, double BaselineRssMB,
        long DownFaults = 0, long UpFaults = 0)
    {
        public double DownMBps => AdapterMB / DownSeconds;
        public double UpMBps => AdapterMB / UpSeconds;
    }

    static readonly string[] OwnOptions = ["--encodings", "--channels"];

    public static int Run(IReadOnlyList<string> arguments)
    {
        var encodings = BenchArguments.String(arguments, "--encodings", string.Join(",", DefaultEncodings)).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var channels = BenchArguments.String(arguments, "--channels", "grpc,bulk").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var c in channels)
            if (c is not ("grpc" or "bulk")) throw new ArgumentException($"--channels: '{c}' is not grpc or bulk");
        var passOn = arguments.Where((a, i) => !OwnOptions.Contains(a) && (i == 0 || !OwnOptions.Contains(arguments[i - 1]))).ToList();
        var results = new List<Result>();
        foreach (var encoding in encodings)
            foreach (var channel in channels)
            {
                var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
                if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") start.ArgumentList.Add(typeof(TransferBenchmark).Assembly.Location);
                start.ArgumentList.Add("transfer-one");
                start.ArgumentList.Add("--encoding");
                start.ArgumentList.Add(encoding);
                start.ArgumentList.Add("--channel");
                start.ArgumentList.Add(channel);
                foreach (var a in passOn) start.ArgumentList.Add(a);
                using var child = Process.Start(start)!;
                string output = child.StandardOutput.ReadToEnd();
                child.WaitForExit();
                if (child.ExitCode != 0) throw new InvalidOperationException($"transfer-one {encoding} {channel} failed ({child.ExitCode}): {output}");
                results.Add(JsonSerializer.Deserialize<Result>(output.Trim().Split('\n')[^1])!);
                Console.Error.WriteLine($"{encoding} {channel}: done");
            }
        Console.WriteLine("| encoding | channel | transport | wire MB down | down MB/s | down MB/CPU-s | first round down MB/s | wire MB up | up MB/s | up MB/CPU-s | first round up MB/s | page faults down / up | peak RSS MB (both sides) |");
        Console.WriteLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in results)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Encoding} | {r.Channel} | {(r.Tls ? "mutual TLS" : "plain text")} | {r.WireDownMB:F0} | {r.DownMBps:F0} | {r.AdapterMB / r.DownCpuSeconds:F0} | {r.AdapterMB / r.FirstDownSeconds:F0} | {r.WireUpMB:F0} | {r.UpMBps:F0} | {r.AdapterMB / r.UpCpuSeconds:F0} | {r.AdapterMB / r.FirstUpSeconds:F0} | {r.DownFaults} / {r.UpFaults} | {r.PeakRssMB:F0} |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"adapter {results[0].AdapterMB:F0} MB fp32; MB/s = adapter MB / seconds, median of {results[0].Repetitions} rounds; RSS after building the adapter: {results[0].BaselineRssMB:F0} MB"));
        return 0;
    }

    public static int RunOne(IReadOnlyList<string> arguments)
    {
        var encoding = TransferEncoding.Parse(BenchArguments.String(arguments, "--encoding", "fp32"));
        string channel = BenchArguments.String(arguments, "--channel", "bulk");
        int layers = int.Parse(BenchArguments.String(arguments, "--layers", "32"), CultureInfo.InvariantCulture);
        int rank = int.Parse(BenchArguments.String(arguments, "--rank", "32"), CultureInfo.InvariantCulture);
        int repetitions = int.Parse(BenchArguments.String(arguments, "--repetitions", "5"), CultureInfo.InvariantCulture);
        if (repetitions < 1) throw new ArgumentException("--repetitions must be at least 1");
        return RunOneAsync(encoding, channel == "bulk", layers, rank, repetitions, arguments.Contains("--tls")).GetAwaiter().GetResult();
    }

    sealed record Measured(double Seconds, double CpuSeconds, long Faults);

    static async Task<Measured> Measure(Func<Task> transfer)
    {
        var self = Process.GetCurrentProcess();
        var cpu = self.TotalProcessorTime;
        long faults = ProcessMemory.MinorFaults();
        var clock = Stopwatch.StartNew();
        await transfer();
        double seconds = clock.Elapsed.TotalSeconds;
        self.Refresh();
        return new Measured(seconds, (self.TotalProcessorTime - cpu).TotalSeconds, ProcessMemory.MinorFaults() - faults);
    }

    static Measured Median(IEnumerable<Measured> rounds)
    {
        var sorted = rounds.OrderBy(m => m.Seconds).ToList();
        return sorted[sorted.Count / 2];
    }

    static async Task<int> RunOneAsync(TransferEncoding encoding, bool bulk, int layers, int rank, int repetitions, bool tls)
    {
        var global = BenchModels.Llama7BAdapter(layers, rank).ToDictionary(p => p.Name, p => p.Tensor);
        double adapterMB = AdapterTensors.Bytes(global) / 1e6;
        double baselineMB = ProcessMemory.RssBytes() / 1e6;
        var remote = new RemoteClients(new RemoteClientsOptions { Roster = new[] { "client-0" }, Encoding = encoding, MaxUpdateBytes = 8L << 30 },
            NullLogger.Instance);
        var run = new RunDescription("bench", new Network.ModelFingerprint(new Dictionary<string, string> { ["config.json"] = "bench" }), new LoraOptions { Rank = rank },
            new FederationOptions { Rounds = repetitions, TotalClients = 1, ClientsPerRound = 1 }, new FedLlm.Runs.LocalObjective()) { BulkTransfer = bulk };
        string kit = Path.Combine(Path.GetTempPath(), $"fedllm-bench-kit-{Environment.ProcessId}");
        ServerSecurity? security = null;
        if (tls)
        {
            FedLlm.Security.ProvisioningKit.Create(kit, new[] { "127.0.0.1" }, new[] { "client-0" }, "https://127.0.0.1:50051");
            security = Network.Security.ServerSecurityLoader.Load(new Network.ServerConfig.ServerSection
            {
                Kit = Path.Combine(kit, "server"), Auth = "certificate", Roster = new() { "client-0" },
            }, "bench");
        }
        await using var host = await FederationHost.StartAsync("127.0.0.1:0", security?.Tls, remote, run, security?.Authenticator ?? new InsecureClaimedIdentity(), () => (0, null));
        var connection = tls
            ? Network.Security.ClientCredentialsLoader.Connect(host.Address, "client-0", FedLlm.Security.ProvisioningKit.ClientFolder(kit, "client-0"), insecure: false, "bench")
            : new ServerConnection(host.Address, "client-0", Insecure: true);
        using var channel = connection.Open();
        var api = new Network.Protocol.Federation.FederationClient(channel);
        var bulkClient = new BulkClient(connection);
        // As NetworkClient does: the last round's received tensors are the next round's receive buffers.
        using var clientPool = new Network.Transfer.ReceivePool(8L << 30);

        var downs = new List<Measured>();
        var ups = new List<Measured>();
        double wireDown = 0, wireUp = 0;
        for (int r = 0; r < repetitions; r++)
        {
            var round = remote.TrainRoundAsync(r, new[] { 0 }, global, new ClientInstructions(r, 1e-4));
            Dictionary<string, Tensor>? received = null;
            downs.Add(await Measure(async () => received = bulk
                ? await bulkClient.FetchAsync(new FetchRequest { Round = r }, tensorSet: false, default, clientPool)
                : await NetworkClient.FetchAsync(api.FetchGlobal(new FetchRequest { Round = r }, connection.Headers()), default, clientPool)));
            SubmitReply? reply = null;
            var update = new ClientUpdate("client-0", received!, 1000);
            ups.Add(await Measure(async () => reply = bulk
                ? await bulkClient.SubmitAsync(r, update, encoding, default)
                : await NetworkClient.SubmitAsync(api, connection, r, update, encoding, default)));
            if (!reply!.Accepted) throw new InvalidOperationException($"update refused: {reply.Reason}");
            var updates = await round;
            var traffic = remote.MeasuredTraffic(r)!.Value;
            (wireDown, wireUp) = (traffic.Sent / 1e6, traffic.Received / 1e6);
            // As the round loop does once a round is aggregated: the server keeps the updates' memory for later uploads.
            remote.Release(updates);
            clientPool.Return(received!.Values.ToList());
        }
        AdapterTensors.Dispose(global);
        if (tls) Directory.Delete(kit, recursive: true);
        var down = Median(downs);
        var up = Median(ups);
        Console.WriteLine(JsonSerializer.Serialize(new Result(encoding.ToString(), bulk ? "bulk" : "grpc", tls, repetitions, adapterMB, wireDown, down.Seconds, down.CpuSeconds,
            wireUp, up.Seconds, up.CpuSeconds, downs[0].Seconds, ups[0].Seconds, ProcessMemory.PeakRssBytes() / 1e6, baselineMB, down.Faults, up.Faults)));
        return 0;
    }
}
