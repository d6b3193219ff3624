namespace FedLlm.Federation.SecureAggregation;

/// <summary>The four phases of a secure-aggregation round, in order (Bonawitz et al. 2017, Fig. 4: rounds 0, 1, 2 and 4;
/// the optional consistency check, round 3, guards against a malicious server and is left out, as in SecAgg+ and in
/// Flower).</summary>
public enum SecAggPhase
{
    /// <summary>Round 0: each client advertises two public keys.</summary>
    AdvertiseKeys,

    /// <summary>Round 1: each client secret-shares its self-mask seed and masking key among its neighbours.</summary>
    ShareKeys,

    /// <summary>Round 2: each client sends its masked input.</summary>
    MaskedInput,

    /// <summary>Round 4: each surviving client reveals the shares that remove the masks.</summary>
    Unmask,
}

/// <summary>Which secret a share belongs to.</summary>
public enum SecretKind : byte
{
    /// <summary>b_u, the seed of a client's self mask: revealed for clients whose masked input arrived.</summary>
    SelfMaskSeed = 1,

    /// <summary>s_u^SK, a client's masking private key: revealed for clients that dropped after sharing keys.</summary>
    MaskingKey = 2,
}

/// <summary>Client → server, phase 0: c_u^PK (encrypts shares) and s_u^PK (derives pairwise masks).</summary>
public sealed record AdvertiseKeys(int Client, byte[] EncryptionKey, byte[] MaskingKey);

/// <summary>Server → client, before phase 1: the advertised keys of the client's share holders (its neighbours and
/// itself), and the round's threshold.</summary>
public sealed record KeyRoster(int Round, int Client, int Threshold, IReadOnlyList<AdvertiseKeys> Holders);

/// <summary>One share pair encrypted for one holder: AES-256-GCM under the pair's agreed key, authenticating the round
/// and both ids.</summary>
public sealed record EncryptedShare(int From, int To, byte[] Nonce, byte[] Ciphertext, byte[] Tag);

/// <summary>Client → server, phase 1: the encrypted shares for each neighbour and SHA-256(b_u), the commitment the
/// server checks the reconstructed seed against.</summary>
public sealed record SharedKeys(int Client, byte[] SelfMaskCommitment, IReadOnlyList<EncryptedShare> Shares);

/// <summary>Server → client, before phase 2: the encrypted shares addressed to the client by neighbours that shared.</summary>
public sealed record MaskingRequest(int Round, int Client, IReadOnlyList<EncryptedShare> Shares);

/// <summary>Client → server, phase 2: y_u = x_u + PRG(b_u) + Σ ± PRG(s_{u,v}) over Z_{2^32}.</summary>
public sealed record MaskedInput(int Client, uint[] Vector);

/// <summary>Server → clients, before phase 3: whose masked inputs arrived and who dropped after sharing keys.</summary>
public sealed record UnmaskRequest(int Round, IReadOnlyList<int> Survivors, IReadOnlyList<int> Dropped);

/// <summary>A share revealed in phase 3: the holder's share of <see cref="Owner"/>'s secret of kind <see cref="Kind"/>.</summary>
public sealed record RevealedShare(int Owner, SecretKind Kind, byte[] Value);

/// <summary>Client → server, phase 3.</summary>
public sealed record UnmaskShares(int Client, IReadOnlyList<RevealedShare> Shares);
