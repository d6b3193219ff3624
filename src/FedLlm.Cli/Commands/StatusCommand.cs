using System.ComponentModel;
using System.Globalization;
using System.Text.Json;
using FedLlm.Federation;
using FedLlm.Network.Client;
using FedLlm.Network.Protocol;
using FedLlm.Network.Security;
using Grpc.Core;
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
        foreach (var line in Format(reply)) Console.WriteLine(line);
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

    /// <summary>The reply as lines of at most 80 characters.</summary>
    public static IReadOnlyList<string> Format(StatusReply reply)
    {
        var lines = new List<string>
        {
            $"run {reply.RunId}",
            reply.Stopping ? $"stopping; round {reply.Round} of {reply.TotalRounds}"
                : reply.RoundOpen ? $"round {reply.Round} of {reply.TotalRounds} open: {reply.UpdatesThisRound} updates so far"
                : reply.Round >= reply.TotalRounds ? $"finished: {reply.TotalRounds} rounds"
                : $"between rounds: next is {reply.Round} of {reply.TotalRounds}",
            "",
            $"{"client",-20} {"state",-12} {"connected",-9} {"last seen",10} {"accepted",8} {"refused",7}",
        };
        foreach (var c in reply.Clients)
        {
            string seen = c.SecondsSinceSeen < 0 ? "never" : string.Create(CultureInfo.InvariantCulture, $"{c.SecondsSinceSeen:F0} s ago");
            string id = c.ClientId.Length > 20 ? c.ClientId[..19] + "…" : c.ClientId;
            lines.Add($"{id,-20} {(c.State.Length == 0 ? "-" : c.State),-12} {(c.Connected ? "yes" : "no"),-9} {seen,10} {c.AcceptedUpdates,8} {c.RejectedUpdates,7}");
        }
        lines.Add("");
        lines.AddRange(LastRound(reply.LastMetrics));
        return lines;
    }

    static IEnumerable<string> LastRound(string json)
    {
        if (json.Length == 0)
        {
            yield return "no round committed yet";
            yield break;
        }
        RoundRecord? r;
        try
        {
            r = JsonSerializer.Deserialize<RoundRecord>(json);
        }
        catch (JsonException)
        {
            r = null;
        }
        if (r is null)
        {
            yield return "last round: (unreadable metrics line)";
            yield break;
        }
        var inv = CultureInfo.InvariantCulture;
        yield return string.Create(inv, $"last committed round {r.Round}: {r.Clients.Count} clients, lr {r.LearningRate:G3}, {r.Seconds:F1} s");
        double loss = r.ClientLoss.Values.Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average();
        yield return string.Create(inv, $"  mean train loss {loss:F4}{(r.EvalLoss is { } e ? $", held-out loss {e:F4}" : "")}{(r.EvalScore is { } sc ? $", score {sc:F3}" : "")}");
        yield return string.Create(inv, $"  {r.BytesSent / 1e6:F1} MB sent, {r.BytesReceived / 1e6:F1} MB received");
    }
}
