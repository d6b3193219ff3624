using FedLlm.Federation;
using FedLlm.Runs;
using Microsoft.Extensions.Logging;


namespace FedLlm.Network.Server;

/// <summary>
/// <c>fedllm server</c>: a <see cref="FederatedRun"/> prepared for a server (model, LoRA, strategy, held-out evaluation,
/// no training data) whose round loop drives <see cref="RemoteClients"/> instead of in-process clients. Outputs are a
/// simulated algorithm's: metrics.jsonl, state-N/, rounds/round-N/, adapter/, plus rounds.png.
/// </summary>
public static class ServerProcess
{
    /// <param name="security">How clients authenticate; null = insecure (h2c, claimed ids).</param>
    /// <param name="onListening">Told the bound address once the listener is up.</param>
    public static async Task<int> RunAsync(ServerConfig config, ServerSecurity? security, ILoggerFactory loggers, Action<string>? onListening = null,
        CancellationToken cancellationToken = default)
    {
        var logger = loggers.CreateLogger("FedLlm.Server");
        var s = config.Server;
        var remoteOptions = s.ToOptions();
        remoteOptions.Validate();
        var options = config.ToRunOptions();
        string output = Path.GetFullPath(options.Output);
        Directory.CreateDirectory(output);
        string runId = RunId(output);

        using var run = FederatedRun.PrepareServer(options, log: m => logger.LogInformation("{Message}", m), cancellationToken: cancellationToken);
        string algorithm = options.Algorithms[0];
        var federation = options.Federation;
        using var remote = new RemoteClients(remoteOptions, loggers.CreateLogger("FedLlm.Server.Rounds"));
        var description = new RunDescription(runId, ModelFingerprint.Of(run.ModelDirectory), run.Lora, federation, options.Objective);
        string metricsPath = Path.Combine(output, "metrics.jsonl");
        int? lastCommitted = new RunStore(output).LatestRound;
        Func<(int, string?)> progress = () =>
        {
            var lines = File.Exists(metricsPath) ? File.ReadLines(metricsPath).ToList() : [];
            return (lines.Count, lines.LastOrDefault());
        };
        IClientAuthenticator authenticator = security?.Authenticator ?? new InsecureClaimedIdentity();
        await using var host = await FederationHost.StartAsync(s.Listen, security?.Tls, remote, description, authenticator, progress, cancellationToken);
        if (security is null)
            logger.LogWarning("INSECURE: plain-text HTTP/2 and unauthenticated client ids; anyone who reaches {Address} can read the adapter and send updates as any client", host.Address);
        if (lastCommitted is { } last) logger.LogInformation("resumed run {Run} from {Output}: rounds 0..{Last} are committed", runId, output, last - 1);
        else logger.LogInformation("started run {Run} in {Output}", runId, output);
        logger.LogInformation("listening on {Address}; task {Task}, {Algorithm}; roster {Roster}; {Rounds} rounds of {PerRound} clients, min {Min} updates, deadline {Deadline} s",
            host.Address, options.Objective.Task, algorithm, string.Join(",", s.Roster), federation.Rounds, Math.Min(federation.ClientsPerRound, federation.TotalClients),
            s.MinUpdates, s.RoundDeadlineSeconds);
        onListening?.Invoke(host.Address);

        var reporter = new Reporter(r =>
            logger.LogInformation("round {Round} committed: clients {Clients}, mean train loss {Loss:F4}{Eval}, {Sent} bytes sent, {Received} received, {Seconds:F1} s",
                r.Round, string.Join(",", r.Clients), r.ClientLoss.Values.Average(), r.EvalLoss is { } l ? $", held-out loss {l:F4}" : "",
                r.BytesSent, r.BytesReceived, r.Seconds));
        var outcome = await run.RunAsync(algorithm, remote, output, resume: true, reporter, cancellationToken);
        RoundChart.WritePng(Path.Combine(output, "rounds.png"), new[] { outcome }, run.Labels);
        remote.Finish();
        logger.LogInformation("run {Run} finished after {Rounds} rounds; adapter in {Adapter}", runId, federation.Rounds, Path.Combine(output, "adapter"));
        // Give polling clients a moment to hear that the run is over before the listener goes away.
        await Task.Delay(TimeSpan.FromSeconds(Math.Min(3, s.HeartbeatSeconds)), CancellationToken.None);
        return 0;
    }

    /// <summary>A run keeps its id across restarts (clients tie their state to it); a new output folder starts a new run.</summary>
    static string RunId(string output)
    {
        string path = Path.Combine(output, "run-id");
        if (File.Exists(path)) return File.ReadAllText(path).Trim();
        string id = $"run-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Guid.NewGuid().ToString("N")[..8]}";
        Io.AtomicFile.WriteAllText(path, id);
        return id;
    }

    sealed class Reporter(Action<RoundRecord> report) : IProgress<RoundRecord>
    {
        public void Report(RoundRecord value) => report(value);
    }
}

/// <summary>TLS settings and the authenticator that goes with them.</summary>
public sealed record ServerSecurity(ServerTls Tls, IClientAuthenticator Authenticator);
