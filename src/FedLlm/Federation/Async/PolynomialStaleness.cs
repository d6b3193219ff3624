namespace FedLlm.Federation.Async;

/// <summary>s_a(τ) = (1 + τ)^(−a): FedAsync's polynomial function; FedBuff's experiments use a = ½, i.e. 1/√(1+τ).</summary>
public sealed class PolynomialStaleness : IStalenessWeight
{
    /// <param name="exponent">a ≥ 0; 0 makes every weight 1.</param>
    public PolynomialStaleness(double exponent = 0.5)
    {
        if (!(exponent >= 0) || double.IsInfinity(exponent))
            throw new ArgumentOutOfRangeException(nameof(exponent), exponent, "the staleness exponent must be finite and ≥ 0");
        Exponent = exponent;
    }

    /// <summary>a.</summary>
    public double Exponent { get; }

    /// <inheritdoc/>
    public string Name => "polynomial";

    /// <inheritdoc/>
    public double Weight(int staleness)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(staleness);
        return Math.Pow(1.0 + staleness, -Exponent);
    }
}
