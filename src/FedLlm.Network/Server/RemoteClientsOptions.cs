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

    /// <summary>Largest update, in wire bytes, the server reads; the stream is cut off beyond it.</summary>
    public long MaxUpdateBytes { get; init; } = 4L << 30;

    /// <summary>The content bounds every update must respect (norm, example count).</summary>
    public UpdateLimits Limits { get; init; } = UpdateLimits.None;

    /// <summary>Transfer encoding of what travels in both directions.</summary>
    public TransferEncoding Encoding { get; init; } = TransferEncoding.Default;

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
        if (Limits.MaxExampleCount < 1) throw new ArgumentOutOfRangeException(nameof(Limits), Limits.MaxExampleCount, "max_example_count must be ≥ 1");
    }
}
