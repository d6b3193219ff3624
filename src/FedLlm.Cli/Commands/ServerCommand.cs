using System.ComponentModel;
using System.Runtime.InteropServices;
using FedLlm.Network;
using FedLlm.Network.Security;
using FedLlm.Network.Server;
using Microsoft.Extensions.Logging;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class ServerSettings : CommandSettings
{
    [CommandOption("--config <FILE>")]
    [Description("server.yaml: model, data (eval), federation, strategy, lora, async (FedBuff, no round barrier), server (listen, roster, deadline, TLS kit), output")]
    public string? Config { get; init; }

    [CommandOption("--listen <HOST:PORT>")][Description("Overrides server.listen (port 0: any free port)")] public string? Listen { get; init; }
    [CommandOption("--output <DIR>")][Description("Overrides server.output: the run folder (a restarted server resumes from it).")] public string? Output { get; init; }

    [CommandOption("--insecure")]
    [Description("Plain-text HTTP/2 with unauthenticated client ids: for a trusted test network only")]
    public bool Insecure { get; init; }

    [CommandOption("--dashboard <HOST:PORT>")]
    [Description("Serve a live read-only dashboard (rounds, participants, metrics, bytes, DP budget) at this address, e.g. 127.0.0.1:8090")]
    public string? Dashboard { get; init; }
}

/// <summary><c>fedllm server</c>: the federation server; clients dial in with <c>fedllm client</c>. SIGTERM or Ctrl+C stops
/// it cleanly (the open round finishes within server.stop_grace_seconds or is abandoned, state is committed, exit 0); a
/// second signal abandons the open round at once.</summary>
public sealed class ServerCommand : Command<ServerSettings>
{
    public override int Execute(CommandContext context, ServerSettings s, CancellationToken cancellationToken)
    {
        if (s.Config is null) throw new ArgumentException("--config server.yaml is required (see examples/federation/server.yaml)");
        var config = ServerConfig.Load(s.Config);
        if (s.Listen is not null) config.Server.Listen = s.Listen;
        if (s.Output is not null) config.Output = s.Output;
        if (config.Server.Insecure && !s.Insecure)
            throw new ArgumentException($"{s.Config}: server.insecure is true; plain text needs the --insecure flag on the command line too");
        using var loggers = FedLlmLogging.CreateFactory();
        var security = s.Insecure ? null : ServerSecurityLoader.Load(config.Server, s.Config);
        var dashboard = s.Dashboard is null ? null : Network.Dashboard.DashboardServer.ParseAddress(s.Dashboard);
        var stop = new StopRequests();
        int signals = 0;
        void OnSignal(PosixSignalContext signal)
        {
            // Handled here: the default action would end the process before the round is committed.
            signal.Cancel = true;
            bool again = Interlocked.Increment(ref signals) > 1;
            stop.Request(signal.Signal == PosixSignal.SIGTERM ? "SIGTERM" : "SIGINT", abandonRound: again);
        }
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        return ServerProcess.RunAsync(config, security, loggers, dashboard: dashboard, stop: stop, cancellationToken: CancellationToken.None).GetAwaiter().GetResult();
    }
}
