using System.ComponentModel;
using FedLlm.Network.Client;
using FedLlm.Network.Protocol;
using FedLlm.Network.Security;
using Grpc.Core;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class AdminSettings : CommandSettings
{
    [CommandArgument(0, "<ACTION>")]
    [Description("stop (finish or abandon the open round, commit, exit 0), abort-round (drop the open round's updates and hand it out again), remove-client ID")]
    public string Action { get; init; } = "";

    [CommandArgument(1, "[CLIENT]")][Description("remove-client: the client id to shut out of the run")] public string? Client { get; init; }

    [CommandOption("--server <URL>")][Description("https://HOST:PORT of the federation server")] public string? Server { get; init; }

    [CommandOption("--kit <DIR>")][Description("The admin-NAME/ folder written by `fedllm certs --admin NAME`")] public string? Kit { get; init; }

    [CommandOption("--abandon-round")][Description("stop: abandon the open round at once instead of letting it finish")] public bool AbandonRound { get; init; }

    [CommandOption("--insecure")][Description("A server started with --insecure; it takes admin calls from its own machine only")] public bool Insecure { get; init; }

    public override ValidationResult Validate()
    {
        if (Action is not ("stop" or "abort-round" or "remove-client"))
            return ValidationResult.Error($"unknown action '{Action}': use stop, abort-round or remove-client ID");
        if (Action == "remove-client" && string.IsNullOrWhiteSpace(Client)) return ValidationResult.Error("remove-client needs the client id: fedllm admin remove-client ID");
        if (Action != "remove-client" && Client is not null) return ValidationResult.Error($"{Action} takes no client id");
        if (AbandonRound && Action != "stop") return ValidationResult.Error("--abandon-round goes with stop only");
        if (Server is null) return ValidationResult.Error("--server https://HOST:PORT is required");
        if (Kit is null && !Insecure) return ValidationResult.Error("--kit DIR (an admin-NAME/ folder from `fedllm certs --admin NAME`) is required");
        return ValidationResult.Success();
    }
}

/// <summary><c>fedllm admin</c>: the operator's controls over a running server, authorised by an admin certificate.</summary>
public sealed class AdminCommand : Command<AdminSettings>
{
    public override int Execute(CommandContext context, AdminSettings s, CancellationToken cancellationToken)
    {
        var connection = s.Insecure ? new ServerConnection(s.Server!, "admin", Insecure: true) : ClientCredentialsLoader.Admin(s.Server!, s.Kit!);
        using var channel = connection.Open();
        var api = new Admin.AdminClient(channel);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        try
        {
            var reply = s.Action switch
            {
                "stop" => api.Stop(new StopRequest { AbandonRound = s.AbandonRound }, deadline: deadline, cancellationToken: cancellationToken),
                "abort-round" => api.AbortRound(new AbortRoundRequest(), deadline: deadline, cancellationToken: cancellationToken),
                _ => api.RemoveClient(new RemoveClientRequest { ClientId = s.Client! }, deadline: deadline, cancellationToken: cancellationToken),
            };
            Console.WriteLine(reply.Message);
            return 0;
        }
        catch (RpcException e)
        {
            var failure = ConnectionFailure.Classify(e, connection);
            Console.WriteLine(failure.Permanent ? $"{s.Server}: {failure.Message}" : $"cannot reach {s.Server}: {failure.Message}");
            return failure.Permanent ? 2 : 1;
        }
    }
}
