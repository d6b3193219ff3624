namespace FedLlm.Federation.SecureAggregation;

/// <summary>
/// A secure-aggregation round cannot finish: too few clients answered a phase to reach the threshold, a message breaks
/// the protocol (a share that fails authentication, a roster without the client's own keys, a survivor listed as
/// dropped), or a reconstructed secret does not match what its owner committed to.
/// </summary>
/// <remarks>The round then fails as a whole: no partial sum is released, because a sum over fewer than the threshold's
/// clients, or one unmasked with a forged share, is exactly what the protocol exists to prevent.</remarks>
public sealed class SecureAggregationException : Exception
{
    /// <summary>Creates the exception; <paramref name="client"/> is the participant at fault, if one is.</summary>
    public SecureAggregationException(string message, int? client = null)
        : base(message)
    {
        Client = client;
    }

    /// <summary>The participant (round-local id) at fault, or null when no single one is.</summary>
    public int? Client { get; }
}
