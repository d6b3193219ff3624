using Microsoft.Extensions.Logging;

namespace FedLlm.Network.Server;

/// <summary>
/// Logs every refused connection or call (bad token, certificate, roster, plain text on the TLS port, wrong protocol)
/// with the peer's address and the reason, once per (peer, reason) per <see cref="Window"/>: a client retrying in a loop
/// makes one line a minute with a count, not thousands.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public sealed class RefusalLog(ILogger logger, ServerMetrics? metrics = null, TimeProvider? clock = null)
{
    /// <summary>How long a (peer, reason) pair is logged only once; repeats are counted and reported on the next
    /// line.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    readonly TimeProvider clock = clock ?? TimeProvider.System;
    readonly Dictionary<(string Peer, string Reason), (DateTimeOffset Logged, int Suppressed)> recent = new();

    /// <param name="kind">token, certificate, roster, plaintext, protocol, handshake, stopping, removed, secagg, stalled.</param>
    /// <param name="peer">The remote address (IP:port; the port is dropped for rate limiting, as reconnects change it).</param>
    /// <param name="reason">Why it was refused, as the peer is told.</param>
    public void Refused(string kind, string? peer, string reason)
    {
        metrics?.Refused(kind);
        string host = HostOf(peer);
        var now = clock.GetUtcNow();
        int suppressed;
        lock (recent)
        {
            if (recent.TryGetValue((host, reason), out var last) && now - last.Logged < Window)
            {
                recent[(host, reason)] = (last.Logged, last.Suppressed + 1);
                return;
            }
            suppressed = recent.TryGetValue((host, reason), out var previous) ? previous.Suppressed : 0;
            recent[(host, reason)] = (now, 0);
            if (recent.Count > 10_000)
                foreach (var key in recent.Where(kv => now - kv.Value.Logged >= Window).Select(kv => kv.Key).ToList()) recent.Remove(key);
        }
        logger.LogWarning("refused {Kind} from {Peer}: {Reason}{Repeats}", kind, host, reason,
            suppressed > 0 ? $" ({suppressed} more times in the last minute)" : "");
    }

    /// <summary>The address part of gRPC's "ipv4:1.2.3.4:5678" / "ipv6:[::1]:5678" or an IP:port.</summary>
    public static string HostOf(string? peer)
    {
        if (string.IsNullOrEmpty(peer)) return "unknown peer";
        string text = peer.StartsWith("ipv4:", StringComparison.Ordinal) || peer.StartsWith("ipv6:", StringComparison.Ordinal) ? peer[5..] : peer;
        int colon = text.LastIndexOf(':');
        if (colon > 0 && text.IndexOf(']') is var bracket && (bracket < 0 || bracket < colon) && (text.Count(c => c == ':') == 1 || bracket >= 0))
            text = text[..colon];
        return text.Trim('[', ']');
    }
}
