namespace FedLlm.Federation.SecureAggregation;

/// <summary>
/// Maps real values to the integers that secure aggregation adds, and sums of them back: x ∈ [−r, r] becomes
/// q(x) = round((x + r)·s) ∈ [0, 2^b − 1] with s = (2^b − 1)/(2r); a sum S of n such integers decodes to S/s − n·r.
/// </summary>
/// <remarks>
/// <para>Error bound (stated, and tested): with round-to-nearest, |q(x)/s − r − x| ≤ 1/(2s) = r/(2^b − 1) for every
/// x ∈ [−r, r]; values outside are first clamped to ±r (the clamp is the clipping the options ask for, and its error is
/// not quantisation error). The decoded sum of n values is off by at most n·r/(2^b − 1) per coordinate.</para>
/// <para>Sums are taken in Z_{2^32}; they never wrap as long as n·(2^b − 1) &lt; 2^32, which <see cref="MaxSummands"/>
/// gives and the options validate, so the sum of the integers over the ring is their sum over the integers.</para>
/// <para>Deterministic rounding (Flower uses stochastic rounding, which is unbiased but makes the sum depend on a random
/// draw); deterministic keeps simulated rounds reproducible bit for bit.</para>
/// </remarks>
public sealed class FixedPointQuantiser
{
    /// <summary>A quantiser of <paramref name="bits"/> bits (1 … 31) over [−<paramref name="range"/>, <paramref name="range"/>].</summary>
    public FixedPointQuantiser(int bits, double range)
    {
        if (bits is < 1 or > 31) throw new ArgumentOutOfRangeException(nameof(bits), bits, "quantisation bits must be in [1, 31]");
        if (!(range > 0) || double.IsInfinity(range)) throw new ArgumentOutOfRangeException(nameof(range), range, "the quantisation range must be positive and finite");
        Bits = bits;
        Range = range;
        Levels = (1u << bits) - 1;
        Scale = Levels / (2 * range);
    }

    /// <summary>b.</summary>
    public int Bits { get; }

    /// <summary>r: values are clamped to [−r, r].</summary>
    public double Range { get; }

    /// <summary>2^b − 1, the largest quantised value.</summary>
    public uint Levels { get; }

    /// <summary>s = (2^b − 1)/(2r), integers per unit.</summary>
    public double Scale { get; }

    /// <summary>r/(2^b − 1): the largest error of one quantised value in [−r, r].</summary>
    public double ErrorBound => Range / Levels;

    /// <summary>The largest n whose sums cannot wrap in Z_{2^32}: n·(2^b − 1) &lt; 2^32.</summary>
    public static long MaxSummands(int bits) => (long)((Ring32.Modulus - 1) / ((1UL << bits) - 1));

    /// <summary>q(clamp(x)).</summary>
    public uint Quantise(double x)
    {
        if (double.IsNaN(x)) throw new ArgumentException("cannot quantise NaN", nameof(x));
        double clamped = Math.Clamp(x, -Range, Range);
        return (uint)Math.Clamp(Math.Round((clamped + Range) * Scale, MidpointRounding.ToEven), 0, Levels);
    }

    /// <summary>The real sum of <paramref name="count"/> values whose quantised sum is <paramref name="sum"/>.</summary>
    public double DecodeSum(uint sum, int count) => sum / Scale - count * Range;
}
