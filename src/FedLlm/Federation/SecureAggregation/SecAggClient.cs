using System.Security.Cryptography;

namespace FedLlm.Federation.SecureAggregation;

/// <summary>
/// One client's side of one secure-aggregation round (Bonawitz et al. 2017, Fig. 4; SecAgg+ when the roster is a
/// sparse neighbour graph): it answers each of the server's phase messages in order, holds its secrets between phases,
/// and refuses messages that break the protocol. Transport-independent: messages are records, whatever carries them.
/// </summary>
/// <remarks>
/// <para>Secrets: c_u (encrypts shares to the neighbours), s_u (its pairwise-mask key, shared so the server can remove
/// its masks if it drops after sharing) and b_u (the self-mask seed, shared so the server can remove the self mask once
/// u's input has arrived). For any u an honest client reveals the share of b_u or of s_u^SK, never both, so the server
/// never learns a lone client's input.</para>
/// <para>Masking: y_u = x_u + PRG(b_u) + Σ_{v &lt; u} PRG(s_{u,v}) − Σ_{v &gt; u} PRG(s_{u,v}) over the neighbours v that
/// shared keys (Flower's sign convention); the pairwise terms cancel in the sum over survivors.</para>
/// <para>Not thread-safe; one instance per client and round.</para>
/// </remarks>
public sealed class SecAggClient : IDisposable
{
    /// <summary>HKDF purpose of pairwise-mask seeds.</summary>
    public const string MaskPurpose = "pairwise-mask";

    readonly KeyAgreement encryptionKey = KeyAgreement.Generate();
    readonly KeyAgreement maskingKey = KeyAgreement.Generate();
    readonly Dictionary<int, AdvertiseKeys> holders = new();
    readonly Dictionary<int, SharePair> received = new();
    byte[]? selfMaskSeed;
    SharePair? ownShares;
    int threshold;
    SecAggPhase next = SecAggPhase.AdvertiseKeys;

    /// <summary>The session of participant <paramref name="client"/> (≥ 0, unique in the round) in <paramref name="round"/>.</summary>
    public SecAggClient(int round, int client)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(client);
        Round = round;
        Client = client;
    }

    /// <summary>The round.</summary>
    public int Round { get; }

    /// <summary>This participant's round-local id.</summary>
    public int Client { get; }

    /// <summary>Phase 0: the two public keys.</summary>
    public AdvertiseKeys Advertise()
    {
        Expect(SecAggPhase.AdvertiseKeys);
        return new AdvertiseKeys(Client, encryptionKey.PublicKey, maskingKey.PublicKey);
    }

    /// <summary>Phase 1: shares b_u and s_u^SK among the roster (threshold t) and encrypts each holder's pair.</summary>
    public SharedKeys ShareKeys(KeyRoster roster)
    {
        ArgumentNullException.ThrowIfNull(roster);
        Expect(SecAggPhase.ShareKeys);
        if (roster.Round != Round || roster.Client != Client)
            throw Refuse($"a key roster for client {roster.Client} in round {roster.Round}");
        foreach (var h in roster.Holders)
            if (h.Client < 0 || !holders.TryAdd(h.Client, h)) throw Refuse($"the key roster lists client {h.Client} twice or with a negative id");
        if (!holders.TryGetValue(Client, out var own) || !encryptionKey.HasPublicKey(own.EncryptionKey) || !maskingKey.HasPublicKey(own.MaskingKey))
            throw Refuse("a key roster without its own keys");
        var keys = roster.Holders.SelectMany(h => new[] { Convert.ToHexString(h.EncryptionKey), Convert.ToHexString(h.MaskingKey) }).ToList();
        if (keys.Distinct().Count() != keys.Count) throw Refuse("two public keys in the key roster are identical");
        if (roster.Threshold < 2 || roster.Threshold > holders.Count)
            throw Refuse($"threshold {roster.Threshold}: not in [2, {holders.Count}] for {holders.Count} share holders");
        threshold = roster.Threshold;

        selfMaskSeed = RandomNumberGenerator.GetBytes(MaskGenerator.SeedBytes);
        var points = holders.Keys.Order().ToList();
        var seedShares = ShamirSecretSharing.Split(selfMaskSeed, threshold, points.Select(SharePoint).ToList());
        byte[] secretKey = maskingKey.ExportPrivateKey();
        var keyShares = ShamirSecretSharing.Split(secretKey, threshold, points.Select(SharePoint).ToList());
        CryptographicOperations.ZeroMemory(secretKey);
        var encrypted = new List<EncryptedShare>(points.Count - 1);
        for (int i = 0; i < points.Count; i++)
        {
            var pair = new SharePair(Client, points[i], seedShares[i].Y, keyShares[i].Y);
            if (points[i] == Client)
            {
                ownShares = pair;
                continue;
            }
            byte[] key = encryptionKey.Agree(holders[points[i]].EncryptionKey, ShareEncryption.Purpose);
            encrypted.Add(ShareEncryption.Encrypt(key, Round, pair));
            CryptographicOperations.ZeroMemory(key);
        }
        return new SharedKeys(Client, SHA256.HashData(selfMaskSeed), encrypted);
    }

    /// <summary>Phase 2: decrypts the shares addressed to this client and masks <paramref name="input"/> (its quantised
    /// update in Z_{2^32}) with its self mask and a pairwise mask per neighbour that shared.</summary>
    public MaskedInput Mask(MaskingRequest request, ReadOnlySpan<uint> input)
    {
        ArgumentNullException.ThrowIfNull(request);
        Expect(SecAggPhase.MaskedInput);
        if (request.Round != Round || request.Client != Client) throw Refuse($"a masking request for client {request.Client} in round {request.Round}");
        foreach (var share in request.Shares)
        {
            if (share.To != Client) throw Refuse($"a share addressed to client {share.To}", share.From);
            if (share.From == Client || !holders.TryGetValue(share.From, out var sender)) throw Refuse($"a share from client {share.From}, who is not a neighbour", share.From);
            byte[] key = encryptionKey.Agree(sender.EncryptionKey, ShareEncryption.Purpose);
            var pair = ShareEncryption.Decrypt(key, Round, share);
            CryptographicOperations.ZeroMemory(key);
            if (!received.TryAdd(share.From, pair)) throw Refuse($"two shares from client {share.From}", share.From);
        }
        if (received.Count + 1 < threshold)
            throw Refuse($"to mask: only {received.Count} neighbours shared keys, and threshold {threshold} needs {threshold - 1}");

        var masked = input.ToArray();
        MaskGenerator.Apply(selfMaskSeed!, masked, subtract: false);
        foreach (int v in received.Keys.Order())
        {
            byte[] seed = maskingKey.Agree(holders[v].MaskingKey, MaskPurpose);
            MaskGenerator.Apply(seed, masked, subtract: Client < v);
            CryptographicOperations.ZeroMemory(seed);
        }
        CryptographicOperations.ZeroMemory(selfMaskSeed);
        return new MaskedInput(Client, masked);
    }

    /// <summary>Phase 3: for each neighbour (and itself) whose input arrived, its share of b; for each that dropped after
    /// sharing, its share of s^SK. Refuses a request that would reveal both for one client or names too few survivors.</summary>
    public UnmaskShares Unmask(UnmaskRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        Expect(SecAggPhase.Unmask);
        if (request.Round != Round) throw Refuse($"an unmasking request for round {request.Round}");
        var survivors = request.Survivors.ToHashSet();
        var dropped = request.Dropped.ToHashSet();
        if (survivors.Count != request.Survivors.Count || dropped.Count != request.Dropped.Count) throw Refuse("the unmasking request repeats a client");
        if (survivors.Overlaps(dropped)) throw Refuse("the unmasking request lists a client both as survivor and as dropped");
        if (!survivors.Contains(Client)) throw Refuse("the unmasking request does not list this client as a survivor");
        if (survivors.Count < threshold) throw Refuse($"to unmask: {survivors.Count} survivors are below threshold {threshold}");
        var revealed = new List<RevealedShare> { new(Client, SecretKind.SelfMaskSeed, ownShares!.SelfMaskShare) };
        foreach (var (owner, pair) in received.OrderBy(kv => kv.Key))
        {
            if (survivors.Contains(owner)) revealed.Add(new RevealedShare(owner, SecretKind.SelfMaskSeed, pair.SelfMaskShare));
            else if (dropped.Contains(owner)) revealed.Add(new RevealedShare(owner, SecretKind.MaskingKey, pair.MaskingKeyShare));
        }
        return new UnmaskShares(Client, revealed);
    }

    /// <summary>Holder h's Shamir evaluation point.</summary>
    public static int SharePoint(int holder) => holder + 1;

    void Expect(SecAggPhase phase)
    {
        if (next != phase) throw Refuse($"asked for phase {phase} while expecting {next}");
        next = phase + 1;
    }

    SecureAggregationException Refuse(string problem, int? culprit = null) =>
        new($"secure aggregation, round {Round}: client {Client} refuses {problem}", culprit);

    /// <inheritdoc/>
    public void Dispose()
    {
        encryptionKey.Dispose();
        maskingKey.Dispose();
        if (selfMaskSeed is not null) CryptographicOperations.ZeroMemory(selfMaskSeed);
    }
}
