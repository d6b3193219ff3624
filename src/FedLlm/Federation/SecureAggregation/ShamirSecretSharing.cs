using System.Numerics;
using System.Security.Cryptography;

namespace FedLlm.Federation.SecureAggregation;

/// <summary>One holder's share of a secret: the point (x, f(x)) of the sharing polynomial.</summary>
/// <param name="X">The holder's evaluation point, 1 or more.</param>
/// <param name="Y">f(X) mod p as <see cref="ShamirSecretSharing.ShareBytes"/> big-endian bytes.</param>
public sealed record ShamirShare(int X, byte[] Y);

/// <summary>
/// Shamir's t-out-of-n secret sharing (Shamir 1979) of a 32-byte secret over the prime field GF(2^521 − 1): the secret
/// is f(0) of a random polynomial of degree t − 1, each holder gets f(x) at its own x, and any t shares give f(0) back by
/// Lagrange interpolation while t − 1 reveal nothing about it.
/// </summary>
/// <remarks>
/// The Mersenne prime 2^521 − 1 holds a whole 256-bit secret in one field element, so one sharing per secret and no
/// chunking. Coefficients are drawn uniformly from the field by rejection from 521 random bits.
/// </remarks>
public static class ShamirSecretSharing
{
    /// <summary>The field's prime, 2^521 − 1.</summary>
    public static readonly BigInteger Prime = (BigInteger.One << 521) - 1;

    /// <summary>Bytes of a share's value (⌈521 / 8⌉).</summary>
    public const int ShareBytes = 66;

    /// <summary>Bytes of a secret.</summary>
    public const int SecretBytes = 32;

    /// <summary>Shares of <paramref name="secret"/> for the holders at <paramref name="points"/> (distinct, ≥ 1), any
    /// <paramref name="threshold"/> of which reconstruct it.</summary>
    public static IReadOnlyList<ShamirShare> Split(ReadOnlySpan<byte> secret, int threshold, IReadOnlyList<int> points)
    {
        if (secret.Length != SecretBytes) throw new ArgumentException($"a secret has {SecretBytes} bytes, got {secret.Length}", nameof(secret));
        if (threshold < 1 || threshold > points.Count)
            throw new ArgumentOutOfRangeException(nameof(threshold), threshold, $"the threshold must be in [1, {points.Count}] for {points.Count} holders");
        if (points.Any(x => x < 1) || points.Distinct().Count() != points.Count)
            throw new ArgumentException("evaluation points must be distinct and ≥ 1", nameof(points));
        var coefficients = new BigInteger[threshold];
        coefficients[0] = new BigInteger(secret, isUnsigned: true, isBigEndian: true);
        for (int i = 1; i < threshold; i++) coefficients[i] = RandomElement();
        return points.Select(x => new ShamirShare(x, ToBytes(Evaluate(coefficients, x)))).ToList();
    }

    /// <summary>f(0) from <paramref name="shares"/> (at least the threshold's number, distinct points).</summary>
    /// <exception cref="SecureAggregationException">Repeated points, a value outside the field, or a result that is not a
    /// 32-byte secret (shares that do not lie on one polynomial of the sharing's degree usually give one).</exception>
    public static byte[] Combine(IReadOnlyList<ShamirShare> shares)
    {
        if (shares.Count == 0) throw new SecureAggregationException("no shares to combine");
        if (shares.Select(s => s.X).Distinct().Count() != shares.Count) throw new SecureAggregationException("two shares at the same point");
        var xs = shares.Select(s => new BigInteger(s.X)).ToArray();
        var ys = shares.Select(s => s.Y.Length == ShareBytes ? new BigInteger(s.Y, isUnsigned: true, isBigEndian: true) : Prime).ToArray();
        if (ys.Any(y => y >= Prime)) throw new SecureAggregationException("a share's value is not an element of the field");
        BigInteger secret = BigInteger.Zero;
        for (int j = 0; j < shares.Count; j++)
        {
            // Lagrange basis at 0: Π_{m≠j} x_m / (x_m − x_j).
            BigInteger numerator = BigInteger.One, denominator = BigInteger.One;
            for (int m = 0; m < shares.Count; m++)
            {
                if (m == j) continue;
                numerator = numerator * xs[m] % Prime;
                denominator = denominator * Mod(xs[m] - xs[j]) % Prime;
            }
            secret = (secret + ys[j] * numerator % Prime * BigInteger.ModPow(denominator, Prime - 2, Prime)) % Prime;
        }
        if (secret.GetByteCount(isUnsigned: true) > SecretBytes) throw new SecureAggregationException("the shares do not combine to a 32-byte secret");
        var bytes = new byte[SecretBytes];
        secret.TryWriteBytes(bytes.AsSpan(SecretBytes - secret.GetByteCount(isUnsigned: true)), out _, isUnsigned: true, isBigEndian: true);
        return bytes;
    }

    static BigInteger Evaluate(BigInteger[] coefficients, int x)
    {
        BigInteger result = BigInteger.Zero;
        for (int i = coefficients.Length - 1; i >= 0; i--) result = (result * x + coefficients[i]) % Prime; // Horner
        return result;
    }

    static BigInteger Mod(BigInteger value) => (value % Prime + Prime) % Prime;

    static BigInteger RandomElement()
    {
        Span<byte> bytes = stackalloc byte[ShareBytes];
        while (true)
        {
            RandomNumberGenerator.Fill(bytes);
            bytes[0] &= 0x01; // 521 bits: the top byte keeps one bit
            var value = new BigInteger(bytes, isUnsigned: true, isBigEndian: true);
            if (value < Prime) return value;
        }
    }

    static byte[] ToBytes(BigInteger value)
    {
        var bytes = new byte[ShareBytes];
        int count = value.GetByteCount(isUnsigned: true);
        value.TryWriteBytes(bytes.AsSpan(ShareBytes - count), out _, isUnsigned: true, isBigEndian: true);
        return bytes;
    }
}
