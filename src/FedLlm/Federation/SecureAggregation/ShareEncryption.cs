using System.Buffers.Binary;
using System.Security.Cryptography;

namespace FedLlm.Federation.SecureAggregation;

/// <summary>The plaintext of an <see cref="EncryptedShare"/>: u's shares of b_u and of s_u^SK for holder v.</summary>
public sealed record SharePair(int From, int To, byte[] SelfMaskShare, byte[] MaskingKeyShare);

/// <summary>
/// Authenticated encryption of share pairs between two clients through the server (Bonawitz et al. 2017: AE.enc with
/// the agreed c_{u,v}): AES-256-GCM with a random 96-bit nonce, the round and both ids as associated data, so the server
/// can neither read, alter, nor redirect a share to another holder or round.
/// </summary>
public static class ShareEncryption
{
    /// <summary>HKDF purpose of the encryption key.</summary>
    public const string Purpose = "share-encryption";

    const int NonceBytes = 12, TagBytes = 16;

    /// <summary>Encrypts <paramref name="pair"/> under <paramref name="key"/> for round <paramref name="round"/>.</summary>
    public static EncryptedShare Encrypt(ReadOnlySpan<byte> key, int round, SharePair pair)
    {
        var plaintext = new byte[8 + pair.SelfMaskShare.Length + pair.MaskingKeyShare.Length];
        BinaryPrimitives.WriteInt32LittleEndian(plaintext, pair.From);
        BinaryPrimitives.WriteInt32LittleEndian(plaintext.AsSpan(4), pair.To);
        pair.SelfMaskShare.CopyTo(plaintext, 8);
        pair.MaskingKeyShare.CopyTo(plaintext, 8 + pair.SelfMaskShare.Length);
        var nonce = RandomNumberGenerator.GetBytes(NonceBytes);
        var ciphertext = new byte[plaintext.Length];
        var tag = new byte[TagBytes];
        using var aes = new AesGcm(key, TagBytes);
        aes.Encrypt(nonce, plaintext, ciphertext, tag, AssociatedData(round, pair.From, pair.To));
        CryptographicOperations.ZeroMemory(plaintext);
        return new EncryptedShare(pair.From, pair.To, nonce, ciphertext, tag);
    }

    /// <summary>Decrypts <paramref name="share"/> and checks that it is from and to whom its envelope says.</summary>
    /// <exception cref="SecureAggregationException">Authentication fails (altered, forged, or for another round or
    /// holder), or the plaintext's ids disagree with the envelope.</exception>
    public static SharePair Decrypt(ReadOnlySpan<byte> key, int round, EncryptedShare share)
    {
        if (share.Nonce.Length != NonceBytes || share.Tag.Length != TagBytes || share.Ciphertext.Length != 8 + 2 * ShamirSecretSharing.ShareBytes)
            throw new SecureAggregationException($"client {share.To}: the share from client {share.From} is malformed", share.From);
        var plaintext = new byte[share.Ciphertext.Length];
        using var aes = new AesGcm(key, TagBytes);
        try
        {
            aes.Decrypt(share.Nonce, share.Ciphertext, share.Tag, plaintext, AssociatedData(round, share.From, share.To));
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new SecureAggregationException($"client {share.To}: the share from client {share.From} fails authentication (altered, or not for this client and round)", share.From);
        }
        int from = BinaryPrimitives.ReadInt32LittleEndian(plaintext), to = BinaryPrimitives.ReadInt32LittleEndian(plaintext.AsSpan(4));
        if (from != share.From || to != share.To)
            throw new SecureAggregationException($"client {share.To}: a share sent as from {share.From} to {share.To} says from {from} to {to}", share.From);
        return new SharePair(from, to, plaintext[8..(8 + ShamirSecretSharing.ShareBytes)], plaintext[(8 + ShamirSecretSharing.ShareBytes)..]);
    }

    static byte[] AssociatedData(int round, int from, int to)
    {
        var data = new byte[12];
        BinaryPrimitives.WriteInt32LittleEndian(data, round);
        BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(4), from);
        BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(8), to);
        return data;
    }
}
