using FedLlm.Federation.Transfer;
using FedLlm.Federation.Validation;

namespace FedLlm.Network.Server;

/// <summary>How the server waits for and screens its networked clients.</summary>
public sealed record RemoteClientsOptions
{
    /// <summary>Client ids in roster order; the round schedule's client index i is Roster[i].</summary>
    public required IReadOnlyList<string> Roster { get; init; }

    /// <summary>After this, a round closes with the updates it has, once it has <see cref="MinUpdates"/>.</summary>
    public TimeSpan RoundDeadline { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Fewest updates a round aggregates; below it the round waits past its deadline for clients to rejoin.</summary>
    public int MinUpdates { get; init; } = 1;

    /// <summary>How often clients send heartbeats (told to them on join).</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A client silent this long is taken as gone and left out of the open round.</summary>
    public TimeSpan HeartbeatTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Largest update, in wire bytes, the server reads; the stream is cut off beyond it. The round's own bound
    /// (what its adapter and returned tensor sets can take in the transfer encoding) applies when it is smaller.</summary>
    public long MaxUpdateBytes { get; init; } = 4L << 30;

    /// <summary>The content bounds every update must respect (norm, example count). A client's example count is also
    /// bounded by what it declared when it joined.</summary>
    public UpdateLimits Limits { get; init; } = UpdateLimits.None;

    /// <summary>When set, an update whose ‖y_i − x‖ exceeds this multiple of the median over the round's updates is
    /// refused when the round closes (with at least three updates, so the median is not the outlier's own).</summary>
    public double? MaxUpdateNormRatio { get; init; }

    /// <summary>Decoded bytes all uploads in flight may hold together; an upload beyond it is told to retry later.</summary>
    public long UploadMemoryBudget { get; init; } = 8L << 30;

    /// <summary>After its k-th refusal in a row a client gets no task for this long × 2^(k−1) (at most
    /// <see cref="MaxRefusalBackoff"/>); a refused client is never handed the same round's task again unless the round
    /// cannot close without it.</summary>
    public TimeSpan RefusalBackoff { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The longest refusal backoff, however many refusals in a row.</summary>
    public TimeSpan MaxRefusalBackoff { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>How long a stopping server lets the open round finish before abandoning it.</summary>
    public TimeSpan StopGrace { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>A bulk connection that moves no data for this long (its request, a tensor's bytes either way) is closed
    /// and logged: a client that stalls mid-upload must not hold its one upload slot and its share of the upload memory
    /// budget for ever, nor an idle connection a socket. The bulk channel's counterpart of Kestrel's minimum data rates
    /// for the RPCs, lenient enough for a link of a few KB/s (one 64 KiB chunk per write).</summary>
    public TimeSpan TransferStallTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Transfer encoding of what travels in both directions.</summary>
    public TransferEncoding Encoding { get; init; } = TransferEncoding.Default;

    /// <summary>Buffered asynchronous aggregation (FedBuff): no rounds, every idle client takes the newest version (see
    /// <see cref="RemoteClients"/>' <see cref="Federation.Async.IAsyncClientPool"/> side); false = synchronous rounds.</summary>
    public bool Asynchronous { get; init; }

    /// <summary>With <see cref="Asynchronous"/>: an update more than this many versions stale is refused before its
    /// tensors are read, with the reason told to its client; null = no bound (server.yaml async.max_staleness).</summary>
    public int? MaxStaleness { get; init; }

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentException">The roster is empty, holds a duplicate, or an id that is blank or has a
    /// '/'.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A count, duration or bound is out of range (the message names the
    /// server.yaml key).</exception>
    public void Validate()
    {
        if (Roster.Count == 0) throw new ArgumentException("the roster lists no clients");
        var duplicate = Roster.GroupBy(id => id, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"client id '{duplicate.Key}' appears twice in the roster");
        foreach (var id in Roster)
            if (string.IsNullOrWhiteSpace(id) || id.Contains('/')) throw new ArgumentException($"roster id '{id}' must be non-empty and contain no '/'");
        if (MinUpdates < 1) throw new ArgumentOutOfRangeException(nameof(MinUpdates), MinUpdates, "min_updates must be ≥ 1");
        if (RoundDeadline <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(RoundDeadline), RoundDeadline, "the round deadline must be positive");
        if (HeartbeatInterval <= TimeSpan.Zero || HeartbeatTimeout <= HeartbeatInterval)
            throw new ArgumentOutOfRangeException(nameof(HeartbeatTimeout), HeartbeatTimeout, "the heartbeat timeout must exceed the (positive) heartbeat interval");
        if (MaxUpdateBytes <= 0) throw new ArgumentOutOfRangeException(nameof(MaxUpdateBytes), MaxUpdateBytes, "max_update_bytes must be positive");
        if (Limits.MaxUpdateNorm is { } norm && !(norm > 0 && double.IsFinite(norm)))
            throw new ArgumentOutOfRangeException(nameof(Limits), norm, "max_update_norm must be a positive number");
        if (MaxUpdateNormRatio is { } ratio && !(ratio > 1 && double.IsFinite(ratio)))
            throw new ArgumentOutOfRangeException(nameof(MaxUpdateNormRatio), ratio, "max_update_norm_ratio must be a number above 1");
        if (UploadMemoryBudget <= 0) throw new ArgumentOutOfRangeException(nameof(UploadMemoryBudget), UploadMemoryBudget, "upload_memory_budget_bytes must be positive");
        if (RefusalBackoff < TimeSpan.Zero || MaxRefusalBackoff < RefusalBackoff)
            throw new ArgumentOutOfRangeException(nameof(RefusalBackoff), RefusalBackoff, "the refusal backoff must be ≥ 0 and at most its maximum");
        if (StopGrace < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(StopGrace), StopGrace, "stop_grace_seconds must be ≥ 0");
        if (TransferStallTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(TransferStallTimeout), TransferStallTimeout, "the transfer stall timeout must be > 0");
        if (MaxStaleness is < 0) throw new ArgumentOutOfRangeException(nameof(MaxStaleness), MaxStaleness, "async.max_staleness must be ≥ 0");
        if (Limits.MaxExampleCount < 1) throw new ArgumentOutOfRangeException(nameof(Limits), Limits.MaxExampleCount, "max_example_count must be ≥ 1");
    }
}
