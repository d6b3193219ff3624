namespace FedLlm.Federation.Aggregation;

/// <summary>
/// A round's updates cannot be aggregated: an update lacks a key of the global adapter, has an extra one, a different
/// shape or dtype, a duplicate client id, an unusable example count, or the server's own state does not fit the global.
/// </summary>
/// <remarks>
/// The message, and the properties, name the client and the tensor key, because with hundreds of LoRA tensors and many
/// clients "shape mismatch" alone is not actionable (a client with another rank or target modules is the usual cause).
/// </remarks>
public sealed class AggregationException : Exception
{
    /// <summary>Creates the exception; <paramref name="clientId"/> and <paramref name="key"/> are null where no single
    /// client or tensor is at fault.</summary>
    public AggregationException(string message, string? clientId = null, string? key = null)
        : base(message)
    {
        ClientId = clientId;
        Key = key;
    }

    /// <summary>The client whose update is at fault ("server state" for the strategy's own state), if one is.</summary>
    public string? ClientId { get; }

    /// <summary>The tensor key at fault, if one is.</summary>
    public string? Key { get; }
}
