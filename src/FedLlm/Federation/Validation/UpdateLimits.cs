namespace FedLlm.Federation.Validation;

/// <summary>Server-side bounds a client's update must respect beyond matching the global adapter's structure.</summary>
public sealed record UpdateLimits
{
    /// <summary>Bound on ‖y_i − x‖₂ over all adapter tensors (the client's weights against the global it started from);
    /// null = no bound. A poisoned or diverged update is usually far larger than honest ones.</summary>
    public double? MaxUpdateNorm { get; init; }

    /// <summary>Largest n_i a client may claim. FedAvg weights by n_i, so an inflated count would let one client
    /// outweigh all others; set it to the largest shard any participant really holds.</summary>
    public long MaxExampleCount { get; init; } = long.MaxValue;

    /// <summary>No norm bound, any positive example count.</summary>
    public static readonly UpdateLimits None = new();
}
