using System.ComponentModel;
using FedLlm.Network;
using FedLlm.Network.Protocol;
using FedLlm.Network.Security;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class StatusSettings : CommandSettings
{
    [CommandOption("--server <URL>")] public string? Server { get; init; }
    [CommandOption("--kit <DIR>")][Description("A client's kit folder (client-ID/), for the TLS handshake")] public string? Kit { get; init; }
    [CommandOption("--client-id <ID>")][Description("The roster id to ask as (default: the kit's)")] public string? ClientId { get; init; }
    [CommandOption("--insecure")] public bool Insecure { get; init; }
}

/// <summary><c>fedllm status</c>: the server's round, its clients' last heartbeats and the last round's metrics.</summary>
public sealed class StatusCommand : Command<StatusSettings>
{
    public override int Execute(CommandContext context, StatusSettings s, CancellationToken cancellationToken)
    {
        if (s.Server is null) throw new ArgumentException("--server https://HOST:PORT is required");
        string clientId = s.ClientId ?? (s.Kit is not null ? FedLlm.Security.ClientKit.Load(s.Kit).ClientId
            : throw new ArgumentException("--kit DIR (a client's kit) is required; with --insecure, --client-id ID of a roster member"));
        var connection = ClientCredentialsLoader.Connect(s.Server, clientId, s.Kit, s.Insecure, "--kit");
        using var channel = connection.Open();
        var api = new FedLlm.Network.Protocol.Federation.FederationClient(channel);
        var reply = api.Status(new StatusRequest(), connection.Headers(), DateTime.UtcNow.AddSeconds(15), cancellationToken);
        AnsiConsole.MarkupLineInterpolated($"run [cyan]{reply.RunId}[/]: round {reply.Round} of {reply.TotalRounds} {(reply.RoundOpen ? $"open ({reply.UpdatesThisRound} updates so far)" : "(between rounds)")}");
        var table = new Table().AddColumns("client", "connected", "last seen", "accepted", "rejected");
        foreach (var c in reply.Clients)
            table.AddRow(c.ClientId, c.Connected ? "yes" : "no", c.SecondsSinceSeen < 0 ? "never" : $"{c.SecondsSinceSeen:F1} s ago", c.AcceptedUpdates.ToString(), c.RejectedUpdates.ToString());
        AnsiConsole.Write(table);
        AnsiConsole.WriteLine(reply.LastMetrics.Length == 0 ? "no round committed yet" : $"last round: {reply.LastMetrics}");
        return 0;
    }
}
