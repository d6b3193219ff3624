using FedLlm.Data;
using FedLlm.Defaults;
using FedLlm.Evaluation;
using FedLlm.Federation;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Runtime;
using FedLlm.Tokenization;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace FedLlm.Network.Server;

/// <summary>
/// <c>fedllm server</c>: the run assembled as <c>fedllm simulate</c> assembles one (model, LoRA, strategy, RunStore,
/// held-out evaluation), with <see cref="RemoteClients"/> in place of in-process clients. Outputs are the simulation's:
/// metrics.jsonl, state-N/, rounds/round-N/, adapter/ and rounds.png.
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
        var options = config.Federation.ToOptions() with { TotalClients = s.Roster.Count };
        options.Validate();
        if (config.Strategy.Algorithms.Count != 1)
            throw new ArgumentException($"strategy.algorithms lists {config.Strategy.Algorithms.Count} algorithms; a server runs exactly one");
        var strategy = StrategyFactory.Create(config.Strategy.Algorithms[0], config.Strategy.ToOptions(config.Strategy.Algorithms[0], options.TotalClients));
        var lora = config.Lora.ToOptions();
        lora.Validate();
        TorchRuntime.ConfigureThreads(config.Threads);

        var defaults = config.Model.Path is null ? EmbeddedDefault.Ensure(m => logger.LogInformation("{Message}", m)) : null;
        string modelDir = config.Model.Path ?? defaults!.ModelDirectory;
        string output = Path.GetFullPath(config.Output ?? Path.Combine("runs", "federation"));
        Directory.CreateDirectory(output);
        string runId = RunId(output);

        using var model = ModelLoader.Load(modelDir, Quantization.BaseWeights.Parse(config.Model.BaseDtype, "model.base_dtype"));
        LoraInjector.Inject(model, lora, new Generator((ulong)options.Seed));
        var initial = AdapterTensors.Snapshot(model);
        Func<IReadOnlyDictionary<string, Tensor>, EvaluationResult>? evaluate = null;
        // As in simulate: with the embedded default model, its held-out set scores the global adapter unless another is named.
        if ((config.Data.EvalPath ?? defaults?.EvalPath) is { } evalPath)
        {
            var tokenizer = TokenizerLoader.Load(modelDir);
            var heldOut = AlpacaReader.ReadAll(evalPath).Examples.Take(config.Data.EvalLimit ?? int.MaxValue).ToList();
            var evaluation = new HeldOutEvaluation(model, tokenizer, PromptTemplate.FromName(config.Data.Template), options.MaxSequenceLength);
            evaluate = adapter =>
            {
                AdapterTensors.Load(model, adapter);
                var scores = evaluation.Evaluate(heldOut);
                return new EvaluationResult(scores.Loss, scores.ExactMatch);
            };
        }

        using var remote = new RemoteClients(remoteOptions, loggers.CreateLogger("FedLlm.Server.Rounds"));
        var store = new RunStore(output);
        using var server = new FederationServer(strategy, options, initial, remote, store, evaluate);
        AdapterTensors.Dispose(initial);
        if (server.TryResume()) logger.LogInformation("resumed run {Run} from {Output}: rounds 0..{Last} are committed", runId, output, server.NextRound - 1);
        else logger.LogInformation("started run {Run} in {Output}", runId, output);

        var run = new RunDescription(runId, ModelFingerprint.Of(modelDir), lora, options, new Runs.LocalObjective());
        Func<(int, string?)> progress = () => (server.NextRound, File.Exists(store.MetricsPath) ? File.ReadLines(store.MetricsPath).LastOrDefault() : null);
        IClientAuthenticator authenticator = security?.Authenticator ?? new InsecureClaimedIdentity();
        await using var host = await FederationHost.StartAsync(s.Listen, security?.Tls, remote, run, authenticator, progress, cancellationToken);
        if (security is null)
            logger.LogWarning("INSECURE: plain-text HTTP/2 and unauthenticated client ids; anyone who reaches {Address} can read the adapter and send updates as any client", host.Address);
        logger.LogInformation("listening on {Address}; roster {Roster}; {Rounds} rounds of {PerRound} clients, min {Min} updates, deadline {Deadline} s",
            host.Address, string.Join(",", s.Roster), options.Rounds, Math.Min(options.ClientsPerRound, options.TotalClients), s.MinUpdates, s.RoundDeadlineSeconds);
        onListening?.Invoke(host.Address);

        var reporter = new Reporter(r =>
        {
            AdapterIO.Save(Path.Combine(output, "rounds", $"round-{r.Round}"), server.Global, lora, modelDir);
            logger.LogInformation("round {Round} committed: clients {Clients}, mean train loss {Loss:F4}{Eval}, {Sent} bytes sent, {Received} received, {Seconds:F1} s",
                r.Round, string.Join(",", r.Clients), r.ClientLoss.Values.Average(), r.EvalLoss is { } l ? $", held-out loss {l:F4}" : "",
                r.BytesSent, r.BytesReceived, r.Seconds);
        });
        await server.RunAsync(reporter, cancellationToken);
        AdapterIO.Save(Path.Combine(output, "adapter"), server.Global, lora, modelDir);
        var outcome = new SimulationOutcome(strategy.Name, null, server.History, 0);
        RoundChart.WritePng(Path.Combine(output, "rounds.png"), new[] { outcome });
        remote.Finish();
        logger.LogInformation("run {Run} finished after {Rounds} rounds; adapter in {Adapter}", runId, options.Rounds, Path.Combine(output, "adapter"));
        // Give polling clients a moment to hear that the run is over before the listener goes away.
        await Task.Delay(TimeSpan.FromSeconds(Math.Min(3, s.HeartbeatSeconds)), CancellationToken.None);
        (strategy as IDisposable)?.Dispose();
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
