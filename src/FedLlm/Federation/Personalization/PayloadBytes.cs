namespace FedLlm.Federation.Personalization;

/// <summary>The client metric of the bytes an update needs when only what it changed is sent (a split adapter's shared
/// half, a rank-limited client's r_i rows and columns); the wire still carries the global layout.</summary>
public static class PayloadBytes
{
    /// <summary>The metric's name in a client update's metrics.</summary>
    public const string MetricName = "payload_bytes";
}
