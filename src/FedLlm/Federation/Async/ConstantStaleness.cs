namespace FedLlm.Federation.Async;

/// <summary>s(τ) = 1: every update counts fully however stale (FedAsync's "constant" function).</summary>
public sealed class ConstantStaleness : IStalenessWeight
{
    /// <inheritdoc/>
    public string Name => "constant";

    /// <inheritdoc/>
    public double Weight(int staleness)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(staleness);
        return 1.0;
    }
}
