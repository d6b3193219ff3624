namespace FedLlm.Federation.Async;

/// <summary>
/// FedAsync's hinge function: s_{a,b}(τ) = 1 for τ ≤ b, and 1 / (a(τ − b) + 1) beyond: updates up to b versions old
/// count fully, older ones fall off hyperbolically. FedAsync's experiments use a = 10, b = 4 (the defaults here).
/// </summary>
public sealed class HingeStaleness : IStalenessWeight
{
    /// <param name="slope">a ≥ 0.</param>
    /// <param name="cutoff">b ≥ 0, in versions.</param>
    public HingeStaleness(double slope = 10, int cutoff = 4)
    {
        if (!(slope >= 0) || double.IsInfinity(slope)) throw new ArgumentOutOfRangeException(nameof(slope), slope, "the hinge slope must be finite and ≥ 0");
        ArgumentOutOfRangeException.ThrowIfNegative(cutoff);
        Slope = slope;
        Cutoff = cutoff;
    }

    /// <summary>a.</summary>
    public double Slope { get; }

    /// <summary>b.</summary>
    public int Cutoff { get; }

    /// <inheritdoc/>
    public string Name => "hinge";

    /// <inheritdoc/>
    public double Weight(int staleness)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(staleness);
        return staleness <= Cutoff ? 1.0 : 1.0 / (Slope * (staleness - Cutoff) + 1.0);
    }
}
