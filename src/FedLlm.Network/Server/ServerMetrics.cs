using Prometheus;

namespace FedLlm.Network.Server;

/// <summary>
/// The server's Prometheus metrics, in a registry of their own (not prometheus-net's process-wide default, so two
/// servers in one test process do not share counters): rounds, clients, bytes, refusals and round durations.
/// </summary>
public sealed class ServerMetrics
{
    readonly Counter roundsClosed, bytesSent, bytesReceived, refusals;
    readonly Gauge openRound, connected;
    readonly Histogram roundSeconds;

    /// <summary>Creates the metrics in a registry of their own, with no round open (-1).</summary>
    public ServerMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry);
        roundsClosed = factory.CreateCounter("fedllm_rounds_closed_total", "Rounds whose updates were collected and handed to aggregation.");
        openRound = factory.CreateGauge("fedllm_open_round", "The round being collected, or -1 between rounds.");
        connected = factory.CreateGauge("fedllm_clients_connected", "Clients heard from within the heartbeat timeout.");
        bytesSent = factory.CreateCounter("fedllm_bytes_sent_total", "Wire bytes of tensors streamed to clients.");
        bytesReceived = factory.CreateCounter("fedllm_bytes_received_total", "Wire bytes of updates read from clients, refused ones included.");
        refusals = factory.CreateCounter("fedllm_refusals_total", "Refused updates and connections, by kind.", "kind");
        roundSeconds = factory.CreateHistogram("fedllm_round_seconds", "Seconds from a round's opening to its close.",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(1, 2, 14) });
        openRound.Set(-1);
    }

    /// <summary>The registry holding these metrics, which the /metrics endpoint serves.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>Sets the connected-clients gauge from <paramref name="count"/> at every scrape.</summary>
    public void TrackConnected(Func<int> count) => Registry.AddBeforeCollectCallback(() => connected.Set(count()));

    /// <summary>Sets the open-round gauge to <paramref name="round"/>.</summary>
    public void RoundOpened(int round) => openRound.Set(round);

    /// <summary>Counts a closed round: its duration in seconds and the wire bytes sent and received in it; the
    /// open-round gauge goes back to -1.</summary>
    public void RoundClosed(double seconds, long sent, long received)
    {
        roundsClosed.Inc();
        openRound.Set(-1);
        roundSeconds.Observe(seconds);
        bytesSent.Inc(sent);
        bytesReceived.Inc(received);
    }

    /// <param name="kind">update, token, certificate, roster, plaintext, protocol, handshake.</param>
    public void Refused(string kind) => refusals.WithLabels(kind).Inc();

    /// <summary>How many refusals of <paramref name="kind"/> were counted so far.</summary>
    public double RefusalCount(string kind) => refusals.WithLabels(kind).Value;
}
