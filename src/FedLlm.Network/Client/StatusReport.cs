using System.Globalization;
using System.Text.Json;
using FedLlm.Federation;
using FedLlm.Network.Protocol;

namespace FedLlm.Network.Client;

/// <summary><c>fedllm status</c>'s text: the run, the round, one line per client, the last committed round in words.</summary>
public static class StatusReport
{
    /// <summary>The reply as lines of at most 80 characters.</summary>
    public static IReadOnlyList<string> Lines(StatusReply reply)
    {
        var lines = new List<string>
        {
            $"run {reply.RunId}",
            reply.Stopping ? $"stopping; round {RoundRecord.NumberOf(reply.Round)} of {reply.TotalRounds}"
                : reply.RoundOpen ? $"round {RoundRecord.NumberOf(reply.Round)} of {reply.TotalRounds} open: {reply.UpdatesThisRound} updates so far"
                : reply.Round >= reply.TotalRounds ? $"finished: {reply.TotalRounds} rounds"
                : $"between rounds: next is {RoundRecord.NumberOf(reply.Round)} of {reply.TotalRounds}",
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
            r = MetricsJsonl.ParseLine(json);
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
        yield return string.Create(inv, $"last committed round {r.Number}: {r.Clients.Count} clients, lr {r.LearningRate:G3}, {r.Seconds:F1} s");
        double loss = r.ClientLoss.Values.Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average();
        yield return string.Create(inv, $"  mean train loss {loss:F4}{(r.EvalLoss is { } e ? $", held-out loss {e:F4}" : "")}{(r.EvalScore is { } sc ? $", score {sc:F3}" : "")}");
        yield return string.Create(inv, $"  {r.BytesSent / 1e6:F1} MB sent, {r.BytesReceived / 1e6:F1} MB received");
        if (r.Privacy is { } p)
            yield return string.Create(inv, $"  privacy spent: {(p.Epsilon is { } eps ? "ε " + eps.ToString("g4", inv) : "ε unbounded (no noise)")} at δ {p.Delta:g3} (σ {p.NoiseMultiplier:g3}, q {p.SamplingRate:g3})");
        if (r.Robust is { } robust)
            foreach (var line in RobustLines(robust)) yield return line;
        if (r.SecureAggregation is { } sa)
        {
            yield return string.Create(inv, $"  secure aggregation ({(sa.Neighbours is { } k ? $"SecAgg+ k = {k}" : "SecAgg")}, threshold {sa.Threshold}): {sa.Survivors} inputs summed, {sa.Dropped} dropped");
            yield return string.Create(inv, $"  secure-aggregation protocol: {sa.ProtocolBytes / 1e6:F2} MB in {sa.ProtocolSeconds:F1} s");
        }
    }

    /// <summary>The rule, who it left out, and each client's share of the aggregate, wrapped to 80 columns.</summary>
    static IEnumerable<string> RobustLines(RoundRobust robust)
    {
        var leftOut = robust.LeftOut();
        yield return $"  robust aggregation ({robust.Rule}): " + (robust.ClientWeights is null ? "coordinate-wise, no per-client weights"
            : leftOut.Count == 0 ? "no client left out" : "left out " + string.Join(", ", leftOut));
        if (robust.ClientWeights is null) yield break;
        var inv = CultureInfo.InvariantCulture;
        var parts = robust.ClientWeights.OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => string.Create(inv, $"{kv.Key} {kv.Value:0.###}")).ToList();
        string line = "    shares:";
        foreach (var part in parts)
        {
            if (line.Length + 1 + part.Length + 1 > 80)
            {
                yield return line + ",";
                line = "     ";
            }
            line += (line.EndsWith(':') || line.Trim().Length == 0 ? " " : ", ") + part;
        }
        yield return line;
    }
}
