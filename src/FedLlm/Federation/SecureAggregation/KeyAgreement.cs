using System.Security.Cryptography;
using System.Text;

namespace FedLlm.Federation.SecureAggregation;

/// <summary>
/// One participant's Diffie–Hellman key pair on NIST P-256, and the pairwise secrets derived from it: the shared point's
/// x-coordinate (ECDH) fed through HKDF-SHA256 with a purpose label, so the key that encrypts shares and the seed of a
/// pairwise mask never coincide.
/// </summary>
/// <remarks>
/// <para>Bonawitz et al. 2017 use Diffie–Hellman key agreement composed with a hash (their KA.agree); HKDF (RFC 5869) is
/// that hash done properly. Curve25519 would be the usual choice, but the platform's ECDiffieHellman offers the NIST
/// curves everywhere .NET runs, and P-256 gives the same 128-bit security.</para>
/// <para>The private key is exported as its 32-byte scalar so that it can be secret-shared (SecAgg's s_u^SK), and a
/// pair rebuilt from a reconstructed scalar derives the same secrets: that is how the server removes a dropped
/// client's pairwise masks.</para>
/// </remarks>
public sealed class KeyAgreement : IDisposable
{
    /// <summary>Bytes of a private scalar.</summary>
    public const int PrivateKeyBytes = 32;

    /// <summary>Bytes of a derived secret (an AES-256 key or a mask seed).</summary>
    public const int SecretBytes = 32;

    readonly ECDiffieHellman key;

    KeyAgreement(ECDiffieHellman key)
    {
        this.key = key;
        PublicKey = key.ExportSubjectPublicKeyInfo();
    }

    /// <summary>A fresh key pair from the operating system's cryptographic generator.</summary>
    public static KeyAgreement Generate() => new(ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256));

    /// <summary>The key pair whose private scalar is <paramref name="privateKey"/> (its public key is recomputed).</summary>
    /// <exception cref="SecureAggregationException">The bytes are not a valid P-256 scalar.</exception>
    public static KeyAgreement FromPrivateKey(ReadOnlySpan<byte> privateKey)
    {
        if (privateKey.Length != PrivateKeyBytes) throw new SecureAggregationException($"a private key has {PrivateKeyBytes} bytes, got {privateKey.Length}");
        try
        {
            var ecdh = ECDiffieHellman.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, D = privateKey.ToArray() });
            return new KeyAgreement(ecdh);
        }
        catch (CryptographicException e)
        {
            throw new SecureAggregationException($"not a valid P-256 private key ({e.Message})");
        }
    }

    /// <summary>The public key (SubjectPublicKeyInfo, DER), as advertised to the other participants.</summary>
    public byte[] PublicKey { get; }

    /// <summary>The private scalar d (big-endian, 32 bytes).</summary>
    public byte[] ExportPrivateKey()
    {
        var d = key.ExportParameters(includePrivateParameters: true).D!;
        if (d.Length == PrivateKeyBytes) return d;
        var padded = new byte[PrivateKeyBytes];
        d.CopyTo(padded, PrivateKeyBytes - d.Length);
        return padded;
    }

    /// <summary>HKDF-SHA256(ECDH(this, peer), info = "fedllm-secagg/" + purpose): the same bytes on both sides of a pair.</summary>
    /// <exception cref="SecureAggregationException">The peer's key is not a P-256 public key.</exception>
    public byte[] Agree(ReadOnlySpan<byte> peerPublicKey, string purpose)
    {
        using var peer = ECDiffieHellman.Create();
        try
        {
            peer.ImportSubjectPublicKeyInfo(peerPublicKey, out int read);
            if (read != peerPublicKey.Length || peer.KeySize != 256) throw new CryptographicException("not a P-256 key");
        }
        catch (CryptographicException e)
        {
            throw new SecureAggregationException($"not a valid P-256 public key ({e.Message})");
        }
        using var peerPublic = peer.PublicKey;
        byte[] shared = key.DeriveRawSecretAgreement(peerPublic);
        try
        {
            return HKDF.DeriveKey(HashAlgorithmName.SHA256, shared, SecretBytes, salt: [], info: Encoding.ASCII.GetBytes("fedllm-secagg/" + purpose));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(shared);
        }
    }

    /// <summary>Whether <paramref name="publicKey"/> is this pair's public key.</summary>
    public bool HasPublicKey(ReadOnlySpan<byte> publicKey) => publicKey.SequenceEqual(PublicKey);

    /// <inheritdoc/>
    public void Dispose() => key.Dispose();
}
