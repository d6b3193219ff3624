using System.ComponentModel;
using FedLlm.Network.Client;
using FedLlm.Network.Protocol;
using FedLlm.Network.Security;
using Grpc.Core;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class StatusSettings : CommandSettings
{
    [CommandOption("--server <URL>")][Description("https://HOST:PORT of the federation server.")] public string? Server { get; init; }
    [CommandOption("--kit <DIR>")][Description("A client's kit folder (client-ID/), for the TLS handshake")] public string? Kit { get; init; }
    [CommandOption("--client-id <ID>")][Description("The roster id to ask as (default: the kit's)")] public string? ClientId { get; init; }
    [CommandOption("--insecure")][Description("Plain-text HTTP/2 to a server started with --insecure.")] public bool Insecure { get; init; }
}

/// <summary><c>fedllm status</c>: the server's round, its clients' state and last heartbeats, and the last round's
/// metrics, laid out for an 80-column terminal.</summary>
public sealed class StatusCommand : Command<StatusSettings>
{
    public override int Execute(CommandContext context, StatusSettings s, CancellationToken cancellationToken)
    {
        if (s.Server is null) throw new ArgumentException("--server https://HOST:PORT is required");
        string clientId = s.ClientId ?? (s.Kit is not null ? FedLlm.Security.ClientKit.Load(s.Kit).ClientId
            : throw new ArgumentException("--kit DIR (a client's kit) is required; with --insecure, --client-id ID of a roster member"));
        var connection = ClientCredentialsLoader.Connect(s.Server, clientId, s.Kit, s.Insecure, "--kit");
        StatusReply reply;
        using (var channel = connection.Open())
        {
            try
            {
                var api = new FedLlm.Network.Protocol.Federation.FederationClient(channel);
                reply = api.Status(new StatusRequest(), connection.Headers(), DateTime.UtcNow.AddSeconds(15), cancellationToken);
            }
            catch (RpcException e)
            {
                var failure = ConnectionFailure.Classify(e, connection);
                Console.WriteLine(failure.Permanent ? $"{s.Server}: {failure.Message}" : $"cannot reach {s.Server}: {Reason(e)}");
                return 1;
            }
        }
        foreach (var line in StatusReport.Lines(reply)) Console.WriteLine(line);
        return 0;
    }

    /// <summary>What went wrong, in words (not the gRPC status dump).</summary>
    static string Reason(RpcException e)
    {
        for (var inner = e.Status.DebugException; inner is not null; inner = inner.InnerException)
            if (inner is System.Net.Sockets.SocketException socket)
                return socket.SocketErrorCode switch
                {
                    System.Net.Sockets.SocketError.ConnectionRefused => "connection refused (is the server running on that port?)",
                    System.Net.Sockets.SocketError.HostNotFound => "host not found",
                    System.Net.Sockets.SocketError.TimedOut => "timed out",
                    _ => socket.Message,
                };
        return e.StatusCode == StatusCode.DeadlineExceeded ? "no answer within 15 s" : string.Join(' ', e.Status.Detail.Split('\n', StringSplitOptions.TrimEntries));
    }
}
