using FedLlm.Federation;
using FedLlm.Runs;
using Microsoft.Extensions.Logging;


namespace FedLlm.Network.Server;

/// <summary>
/// <c>fedllm server</c>: a <see cref="FederatedRun"/> prepared for a server (model, LoRA, strategy, held-out evaluation,
/// no training data) whose round loop drives <see cref="RemoteClients"/> instead of in-process clients. Outputs are a
/// simulated algorithm's: metrics.jsonl, state-N/, rounds/round-N/, adapter/, plus results.json and rounds.png.
/// </summary>
/// <remarks>
/// A stop request (SIGTERM/SIGINT through <see cref="StopRequests"/>, or <c>fedllm admin stop</c>) stops admitting:
/// the open round has <c>stop_grace_seconds</c> to finish and be committed, or is abandoned (nothing of it is
/// committed); polling clients are told the server is stopping, and the process exits 0. The same command resumes from
/// the last committed round, and ends as an uninterrupted run would.
/// <para>With server.yaml's async: the loop is FedBuff's (<see cref="Federation.Async.RealTimeBufferedAsyncServer"/> over
/// <see cref="RemoteClients"/> as an <see cref="Federation.Async.IAsyncClientPool"/>): one committed version per K accepted
/// updates; a restart resumes from the last committed version, and updates buffered but not aggregated are lost (their
/// clients get a task on the newest version).</para>
/// </remarks>
public static class ServerProcess
{
    /// <param name="security">How clients authenticate; null = insecure (h2c, claimed ids).</param>
    /// <param name="onListening">Told the bound address once the listener is up.</param>
    /// <param name="dashboard">Where to serve the live read-only dashboard (loopback advised), or null for none.</param>
    /// <param name="stop">Where stop requests arrive; null = only <paramref name="cancellationToken"/> stops the server (abruptly).</param>
    /// <param name="config">The parsed server.yaml.</param>
    /// <param name="loggers">Where the server's loggers come from.</param>
    /// <param name="cancellationToken">Stops the server at once, without committing the open round.</param>
    /// <param name="secAgg">Where the secure-aggregation exchange keeps its open round (tests pass one with an observer
    /// of what the server receives); null = a new one.</param>
    public static async Task<int> RunAsync(ServerConfig config, ServerSecurity? security, ILoggerFactory loggers, Action<string>? onListening = null,
        System.Net.IPEndPoint? dashboard = null, StopRequests? stop = null, CancellationToken cancellationToken = default, SecAggSessions? secAgg = null)
    {
        var logger = loggers.CreateLogger("FedLlm.Server");
        stop ??= new StopRequests();
        var s = config.Server;
        var options = config.ToRunOptions();
        var remoteOptions = s.ToOptions();
        if (config.IsAsynchronous) remoteOptions = remoteOptions with { Asynchronous = true, MaxStaleness = options.Async?.MaxStaleness };
        remoteOptions.Validate();
        string output = Path.GetFullPath(options.Output);
        Directory.CreateDirectory(output);
        string runId = RunId(output);

        // A stop before the listener is up only has preparation to cut short.
        using var preparing = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        stop.Subscribe((reason, _) =>
        {
            logger.LogWarning("stopping ({Reason}) while preparing; nothing to commit", reason);
            preparing.Cancel();
        });
        FederatedRun run;
        ModelFingerprint fingerprint;
        try
        {
            run = FederatedRun.PrepareServer(options, log: m => logger.LogInformation("{Message}", m), cancellationToken: preparing.Token);
            fingerprint = ModelFingerprint.Of(run.ModelDirectory);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return 0;
        }
        using var _ = run;
        if (preparing.IsCancellationRequested) return 0;
        string algorithm = options.Algorithms[0];
        var federation = options.Federation;
        var metrics = new ServerMetrics();
        using var remote = new RemoteClients(remoteOptions, loggers.CreateLogger("FedLlm.Server.Rounds"), metrics: metrics);
        metrics.TrackConnected(remote.ConnectedCount);
        var description = new RunDescription(runId, fingerprint, run.Lora, federation, options.Objective) { SecureAggregation = options.SecureAggregation is not null, ClientEvalFraction = options.Data.ClientEvalFraction,
            BulkTransfer = config.Server.BulkTransfer };
        secAgg ??= new SecAggSessions();
        string metricsPath = Path.Combine(output, "metrics.jsonl");
        int? lastCommitted = new RunStore(output).LatestRound;
        Func<(int, string?)> progress = () =>
        {
            string text = File.Exists(metricsPath) ? File.ReadAllText(metricsPath) : "";
            // An append in progress leaves a last line without its newline: count and show complete lines only.
            var lines = text[..(text.LastIndexOf('\n') + 1)].Split('\n', StringSplitOptions.RemoveEmptyEntries);
            return (lines.Length, lines.LastOrDefault());
        };
        IClientAuthenticator authenticator = security?.Authenticator ?? new InsecureClaimedIdentity();
        var extras = new FederationHostExtras
        {
            Admin = security?.Admin ?? new LoopbackAdmin(),
            Stop = stop,
            Metrics = metrics,
            MetricsListen = s.MetricsListen,
            SecAgg = secAgg,
        };
        await using var host = await FederationHost.StartAsync(s.Listen, security?.Tls, remote, description, authenticator, progress, cancellationToken, extras);
        stop.Subscribe((reason, abandon) =>
        {
            bool first = remote.BeginStop(reason, abandon);
            if (remote.OpenRoundNumber is { } open)
                logger.LogWarning("stopping ({Reason}): no new round; round {Round} {What}", reason, RoundRecord.NumberOf(open),
                    abandon ? "is abandoned" : $"has {remoteOptions.StopGrace.TotalSeconds:F0} s to finish, else it is abandoned");
            else if (first) logger.LogWarning("stopping ({Reason}): no new round", reason);
        });
        if (security is null)
            logger.LogWarning("INSECURE: plain-text HTTP/2 and unauthenticated client ids; anyone who reaches {Address} can read the adapter and send updates as any client", host.Address);
        if (lastCommitted is { } last) logger.LogInformation("resumed run {Run} from {Output}: rounds 1..{Last} are committed", runId, output, last);
        else logger.LogInformation("started run {Run} in {Output}", runId, output);
        if (options.SecureAggregation is { } secure)
            logger.LogInformation("secure aggregation: threshold {Threshold}, {Graph}, {Bits}-bit fixed point over [-{Range}, {Range}]; each phase after the keys has {Phase:F0} s",
                secure.ResolvedThreshold(Math.Min(federation.ClientsPerRound, federation.TotalClients)), secure.Neighbours is { } k ? $"{k} neighbours (SecAgg+)" : "every pair (SecAgg)",
                secure.QuantisationBits, secure.QuantisationRange, secure.QuantisationRange, remoteOptions.RoundDeadline.TotalSeconds / 4);
        logger.LogInformation("base model {Fingerprint}; max example count per client: declared at join{Max}; update norm bound: {Norm}",
            fingerprint, s.MaxExampleCount is { } max ? $" and at most {max}" : "", NormBound(s));
        if (s.MetricsListen is { } m) logger.LogInformation("Prometheus metrics on http://{Metrics}/metrics", m);
        if (remoteOptions.Asynchronous)
        {
            var a = options.Async ?? new FedLlm.Federation.Async.AsyncOptions();
            logger.LogInformation("listening on {Address}; task {Task}, {Algorithm} (asynchronous); roster {Roster}; {Rounds} versions, each aggregating {K} updates, staleness weight {Weight}, max staleness {Max}",
                host.Address, options.Objective.Task, algorithm, string.Join(",", s.Roster), federation.Rounds, a.BufferSizeFor(federation), a.CreateWeight().Name,
                a.MaxStaleness?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none");
        }
        else
            logger.LogInformation("listening on {Address}; task {Task}, {Algorithm}; roster {Roster}; {Rounds} rounds of {PerRound} clients, min {Min} updates, deadline {Deadline} s",
                host.Address, options.Objective.Task, algorithm, string.Join(",", s.Roster), federation.Rounds, Math.Min(federation.ClientsPerRound, federation.TotalClients),
                s.MinUpdates ?? 1, s.RoundDeadlineSeconds);
        onListening?.Invoke(host.Address);

        var reporter = new Reporter(r =>
        {
            if (r.Async is { } versionAsync)
            {
                logger.LogInformation("version {Version} committed: updates from {Clients}, trained from versions {Bases} (staleness {Staleness}, weights {Weights}), mean train loss {Loss:F4}{Eval}, {Sent} bytes sent, {Received} received, {Seconds:F1} s",
                    r.Number, string.Join(",", versionAsync.Updates.Select(u => u.Client)), string.Join(",", versionAsync.Updates.Select(u => u.BaseVersion)),
                    string.Join(",", versionAsync.Updates.Select(u => u.Staleness)), string.Join(",", versionAsync.Updates.Select(u => u.Weight.ToString("G4", System.Globalization.CultureInfo.InvariantCulture))),
                    r.ClientLoss.Values.Average(), r.EvalLoss is { } held ? $", held-out loss {held:F4}" : "", r.BytesSent, r.BytesReceived, r.Seconds);
                return;
            }
            logger.LogInformation("round {Round} committed: clients {Clients}, mean train loss {Loss:F4}{Eval}, {Sent} bytes sent, {Received} received, {Seconds:F1} s",
                r.Number, string.Join(",", r.Clients), r.ClientLoss.Values.Average(), r.EvalLoss is { } l ? $", held-out loss {l:F4}" : "",
                r.BytesSent, r.BytesReceived, r.Seconds);
        });
        var monitor = new Monitoring.RunMonitor($"FedLlm server {runId}")
        {
            Roster = () => remote.Status().Clients.Select(c => new Monitoring.RosterEntry(c.Id, c.Connected, c.Accepted, c.Rejected)).ToList(),
        };
        monitor.BeginRun(algorithm, federation.Rounds, s.Roster);
        await using var dashboardServer = dashboard is null ? null : await Dashboard.DashboardServer.StartAsync(monitor, dashboard, cancellationToken);
        if (dashboardServer is not null) logger.LogInformation("dashboard on {Address}", dashboardServer.Address);
        try
        {
            var progressReporter = new Reporter(r => { reporter.Report(r); monitor.Report(r); });
            IClientExecutor executor = new Monitoring.MonitoredClients(remote, monitor, i => s.Roster[i]);
            // Secure aggregation: the monitored registry hands out rounds and collects key advertisements; the phases
            // run around it, and the round loop gets only the unmasked sum.
            if (options.SecureAggregation is not null) executor = new SecureRemoteClients(executor, remote, secAgg, loggers.CreateLogger("FedLlm.Server.SecAgg"));
            var outcome = remoteOptions.Asynchronous
                ? await run.RunBufferedAsync(remote, output, resume: true, progressReporter, m => logger.LogWarning("{Message}", m), cancellationToken)
                : await run.RunAsync(algorithm, executor, output, resume: true, progressReporter, cancellationToken);
            monitor.Finish();
            // The same results.json (schema in docs/metrics.md) and rounds.png as a simulated run: privacy spent,
            // secure aggregation, robust rule and held-out scores of the run in one file.
            ResultsReport.Write(output, [outcome], run.Labels, options.Federation.Seed);
        }
        catch (ServerStoppingException e)
        {
            int? committed = new RunStore(output).LatestRound;
            logger.LogWarning("{Why}", e.Message);
            logger.LogWarning("stopped: {Committed}; run the same command to resume run {Run}",
                committed is { } c ? $"rounds 1..{c} are committed" : "no round is committed", runId);
            // Clients polling now hear "stopping" and rejoin the restarted server.
            await Task.Delay(TimeSpan.FromSeconds(Math.Min(2, s.HeartbeatSeconds)), CancellationToken.None);
            return 0;
        }
        remote.Finish();
        logger.LogInformation("run {Run} finished after {Rounds} rounds; adapter in {Adapter}", runId, federation.Rounds, Path.Combine(output, "adapter"));
        // Asynchronous rounds end while other clients still train a version of their own: wait (while their heartbeats
        // last, at most a round deadline) until each has come back and heard that the run is over.
        var lingerUntil = DateTime.UtcNow + TimeSpan.FromSeconds(s.RoundDeadlineSeconds);
        if (remote.ClientsStillTraining > 0)
            logger.LogInformation("waiting for {Count} clients still training to hear that the run is over", remote.ClientsStillTraining);
        while (remote.ClientsStillTraining > 0 && DateTime.UtcNow < lingerUntil)
            await Task.Delay(TimeSpan.FromMilliseconds(200), CancellationToken.None);
        // Every roster client should hear that the run is over before the listener goes away, including one away in its
        // reconnect backoff (at most 10 s by default); one that never comes back (a client that died) is not waited for
        // longer than that.
        var tellUntil = DateTime.UtcNow + EndOfRunNotice;
        if (remote.ClientsNotYetToldTheEnd > 0)
            logger.LogInformation("waiting up to {Seconds:F0} s for {Count} clients to hear that the run is over", EndOfRunNotice.TotalSeconds, remote.ClientsNotYetToldTheEnd);
        while (remote.ClientsNotYetToldTheEnd > 0 && DateTime.UtcNow < tellUntil)
            await Task.Delay(TimeSpan.FromMilliseconds(200), CancellationToken.None);
        // And a moment for the last replies to leave before the listener goes away.
        await Task.Delay(TimeSpan.FromSeconds(Math.Min(3, s.HeartbeatSeconds)), CancellationToken.None);
        return 0;
    }

    /// <summary>How long a finished server waits for clients to hear that the run is over: longer than a client's
    /// longest reconnect backoff (<see cref="Client.NetworkClientOptions.MaxBackoff"/>'s default) plus a poll.</summary>
    static readonly TimeSpan EndOfRunNotice = TimeSpan.FromSeconds(15);

    static string NormBound(ServerConfig.ServerSection s) =>
        (s.MaxUpdateNorm, s.MaxUpdateNormRatio) switch
        {
            (null, null) => "none",
            ({ } n, null) => $"{n:G4}",
            (null, { } r) => $"{r:G4} × the round's median",
            ({ } n, { } r) => $"{n:G4} and {r:G4} × the round's median",
        };

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

/// <summary>TLS settings and the authenticators that go with them.</summary>
public sealed record ServerSecurity(ServerTls Tls, IClientAuthenticator Authenticator, IAdminAuthenticator Admin);
