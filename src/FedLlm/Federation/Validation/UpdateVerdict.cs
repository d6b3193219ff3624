namespace FedLlm.Federation.Validation;

/// <summary>Whether the server takes a client's update into the round, and if not, why (for the log).</summary>
/// <param name="Accepted">True when every check passed.</param>
/// <param name="Reason">For a rejection: a sentence naming the client and the offending tensor or field; null when accepted.</param>
public sealed record UpdateVerdict(bool Accepted, string? Reason)
{
    /// <summary>The update is accepted.</summary>
    public static readonly UpdateVerdict Ok = new(true, null);

    /// <summary>‖y_i − x‖₂ when the validator computed it (the structure checks passed), for the round log.</summary>
    public double? UpdateNorm { get; init; }

    /// <summary>The update is refused for <paramref name="reason"/>.</summary>
    public static UpdateVerdict Reject(string reason) => new(false, reason);

    /// <summary>"accepted", or "rejected: " and the reason.</summary>
    public override string ToString() => Accepted ? "accepted" : $"rejected: {Reason}";
}
