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
/// 80 M parameters, 320 MB in fp32) goes from a FedLlm server to a client (FetchGlobal) and back (SubmitUpdate, with
/// the server's validation) over gRPC on 127.0.0.1, once per transfer encoding. Each encoding runs in a child process
/// so its peak RSS (server and client together, plus the adapter copies both hold) is its own. With --tls the transfer
/// runs over mutual TLS with a provisioning kit made for the run (the deployed setting), else over h2c.
/// </summary>
/// <remarks>dotnet run -c Release --project bench/FedLlm.Bench -- transfer [--encodings fp32,bf16,...] [--layers 32] [--rank 32] [--tls]</remarks>
public static class TransferBenchmark
{
    static readonly string[] DefaultEncodings = { "fp32", "fp32+gzip", "bf16", "bf16+gzip", "fp16", "int8", "int8+gzip" };

    /// <param name="DownCpuSeconds">CPU time of the whole process (server and client) during the download: on a busy
    /// machine, adapter MB per CPU second shows what the code costs, apart from how much CPU it was given.</param>
    public sealed record Result(string Encoding, bool Tls, double AdapterMB, double WireDownMB, double DownSeconds, double DownCpuSeconds, double WireUpMB,
        double UpSeconds, double UpCpuSeconds, double PeakRssMB, double BaselineRssMB, long DownFaults = 0, long UpFaults = 0)
    {
        public double DownMBps => AdapterMB / DownSeconds;
        public double UpMBps => AdapterMB / UpSeconds;
    }

    public static int Run(IReadOnlyList<string> arguments)
    {
        var encodings = BenchArguments.String(arguments, "--encodings", string.Join(",", DefaultEncodings)).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var passOn = arguments.Where((a, i) => a != "--encodings" && (i == 0 || arguments[i - 1] != "--encodings")).ToList();
        var results = new List<Result>();
        foreach (var encoding in encodings)
        {
            var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
            if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") start.ArgumentList.Add(typeof(TransferBenchmark).Assembly.Location);
            start.ArgumentList.Add("transfer-one");
            start.ArgumentList.Add("--encoding");
            start.ArgumentList.Add(encoding);
            foreach (var a in passOn) start.ArgumentList.Add(a);
            using var child = Process.Start(start)!;
            string output = child.StandardOutput.ReadToEnd();
            child.WaitForExit();
            if (child.ExitCode != 0) throw new InvalidOperationException($"transfer-one {encoding} failed ({child.ExitCode}): {output}");
            results.Add(JsonSerializer.Deserialize<Result>(output.Trim().Split('\n')[^1])!);
            Console.Error.WriteLine($"{encoding}: done");
        }
        Console.WriteLine($"| encoding | transport | wire MB down | down MB/s | down MB/CPU-s | down page faults | wire MB up | up MB/s | up MB/CPU-s | up page faults | peak RSS MB (both sides) |");
        Console.WriteLine($"|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in results)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Encoding} | {(r.Tls ? "mutual TLS" : "h2c")} | {r.WireDownMB:F0} | {r.DownMBps:F0} | {r.AdapterMB / r.DownCpuSeconds:F0} | {r.DownFaults} | {r.WireUpMB:F0} | {r.UpMBps:F0} | {r.AdapterMB / r.UpCpuSeconds:F0} | {r.UpFaults} | {r.PeakRssMB:F0} |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"adapter {results[0].AdapterMB:F0} MB fp32; MB/s = adapter MB / seconds; RSS after building the adapter: {results[0].BaselineRssMB:F0} MB"));
        return 0;
    }

    public static int RunOne(IReadOnlyList<string> arguments)
    {
        var encoding = TransferEncoding.Parse(BenchArguments.String(arguments, "--encoding", "fp32"));
        int layers = int.Parse(BenchArguments.String(arguments, "--layers", "32"), CultureInfo.InvariantCulture);
        int rank = int.Parse(BenchArguments.String(arguments, "--rank", "32"), CultureInfo.InvariantCulture);
        return RunOneAsync(encoding, layers, rank, arguments.Contains("--tls")).GetAwaiter().GetResult();
    }

    static async Task<int> RunOneAsync(TransferEncoding encoding, int layers, int rank, bool tls)
    {
        var global = BenchModels.Llama7BAdapter(layers, rank).ToDictionary(p => p.Name, p => p.Tensor);
        double adapterMB = AdapterTensors.Bytes(global) / 1e6;
        double baselineMB = ProcessMemory.RssBytes() / 1e6;
        var remote = new RemoteClients(new RemoteClientsOptions { Roster = new[] { "client-0" }, Encoding = encoding, MaxUpdateBytes = 8L << 30 },
            NullLogger.Instance);
        var run = new RunDescription("bench", new Network.ModelFingerprint(new Dictionary<string, string> { ["config.json"] = "bench" }), new LoraOptions { Rank = rank },
            new FederationOptions { Rounds = 1, TotalClients = 1, ClientsPerRound = 1 }, new FedLlm.Runs.LocalObjective());
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
        var round = remote.TrainRoundAsync(0, new[] { 0 }, global, new ClientInstructions(0, 1e-4));
        var connection = tls
            ? Network.Security.ClientCredentialsLoader.Connect(host.Address, "client-0", FedLlm.Security.ProvisioningKit.ClientFolder(kit, "client-0"), insecure: false, "bench")
            : new ServerConnection(host.Address, "client-0", Insecure: true);
        using var channel = connection.Open();
        var api = new Network.Protocol.Federation.FederationClient(channel);

        var self = Process.GetCurrentProcess();
        var cpu = self.TotalProcessorTime;
        long faults = ProcessMemory.MinorFaults();
        var clock = Stopwatch.StartNew();
        var received = await NetworkClient.FetchAsync(api.FetchGlobal(new FetchRequest { Round = 0 }, connection.Headers()), default);
        double down = clock.Elapsed.TotalSeconds;
        self.Refresh();
        double downCpu = (self.TotalProcessorTime - cpu).TotalSeconds;
        long downFaults = ProcessMemory.MinorFaults() - faults;
        faults = ProcessMemory.MinorFaults();
        cpu = self.TotalProcessorTime;
        clock.Restart();
        var reply = await NetworkClient.SubmitAsync(api, connection, 0, new ClientUpdate("client-0", received, 1000), encoding, default);
        double up = clock.Elapsed.TotalSeconds;
        self.Refresh();
        double upCpu = (self.TotalProcessorTime - cpu).TotalSeconds;
        long upFaults = ProcessMemory.MinorFaults() - faults;
        if (!reply.Accepted) throw new InvalidOperationException($"update refused: {reply.Reason}");
        var updates = await round;
        var traffic = remote.MeasuredTraffic(0)!.Value;
        foreach (var u in updates) AdapterTensors.Dispose(u.Weights);
        AdapterTensors.Dispose(received);
        AdapterTensors.Dispose(global);
        if (tls) Directory.Delete(kit, recursive: true);
        Console.WriteLine(JsonSerializer.Serialize(new Result(encoding.ToString(), tls, adapterMB, traffic.Sent / 1e6, down, downCpu, traffic.Received / 1e6, up, upCpu,
            ProcessMemory.PeakRssBytes() / 1e6, baselineMB, downFaults, upFaults)));
        return 0;
    }
}
