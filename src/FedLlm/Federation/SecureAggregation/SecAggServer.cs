using System.Security.Cryptography;

namespace FedLlm.Federation.SecureAggregation;

/// <summary>The outcome of a secure-aggregation round: Σ x_u over the survivors, in Z_{2^32}, and who they are.</summary>
/// <param name="Sum">The unmasked sum of the survivors' inputs.</param>
/// <param name="Survivors">U3: the clients whose masked inputs arrived and whose inputs the sum holds.</param>
/// <param name="DroppedPerPhase">How many clients fell away before each phase's message (advertise, share, mask, unmask).</param>
public sealed record SecAggResult(uint[] Sum, IReadOnlyList<int> Survivors, IReadOnlyList<int> DroppedPerPhase);

/// <summary>
/// The server's side of one secure-aggregation round: it routes keys and encrypted shares, collects masked inputs, and
/// unmasks their sum from the survivors' revealed shares (Bonawitz et al. 2017, Fig. 4; SecAgg+ with a sparse
/// <see cref="NeighbourGraph"/>). It never sees an unmasked input.
/// </summary>
/// <remarks>
/// <para>Dropouts: a client may fall away before any phase. Each phase needs at least t answers (U1 ⊇ U2 ⊇ U3 ⊇ U4); the
/// sum is over U3. A survivor's self mask is removed with its reconstructed b_u, a client that dropped after sharing
/// keys (U2 \ U3) has its pairwise masks removed with its reconstructed s^SK. Each reconstruction needs t shares from the
/// owner's holders in U4, and is checked against what the owner committed to (SHA-256(b_u), s^PK): a forged or corrupted
/// share makes the round fail rather than release a wrong sum.</para>
/// <para>Not thread-safe; one instance per round. Phases must be called in order.</para>
/// </remarks>
public sealed class SecAggServer
{
    readonly int threshold;
    readonly int? neighbours;
    readonly int vectorLength;
    readonly Func<int, int>? shuffle;
    readonly HashSet<int> participants;
    readonly int[] droppedPerPhase = new int[4];
    Dictionary<int, AdvertiseKeys> advertised = new();
    IReadOnlyDictionary<int, IReadOnlyList<int>> graph = new Dictionary<int, IReadOnlyList<int>>();
    readonly Dictionary<int, byte[]> commitments = new();
    Dictionary<int, uint[]> masked = new();
    HashSet<int> shared = new();
    List<int> dropped = new();
    SecAggPhase next = SecAggPhase.AdvertiseKeys;

    /// <summary>A round among <paramref name="participants"/> (distinct, ≥ 0) with inputs of
    /// <paramref name="vectorLength"/> ring elements.</summary>
    /// <param name="threshold">t ≥ 2: shares needed to reconstruct a secret, and answers needed in every phase.</param>
    /// <param name="neighbours">k (even) for SecAgg+'s sparse graph; null = every pair (SecAgg).</param>
    /// <param name="shuffle">Orders the sparse graph's ring (tests); null = cryptographic.</param>
    /// <param name="round">The round number, bound into every message.</param>
    /// <param name="participants">The participants' ids.</param>
    /// <param name="vectorLength">Ring elements of each input.</param>
    public SecAggServer(int round, IReadOnlyList<int> participants, int threshold, int? neighbours, int vectorLength, Func<int, int>? shuffle = null)
    {
        ArgumentNullException.ThrowIfNull(participants);
        if (participants.Any(p => p < 0) || participants.Distinct().Count() != participants.Count)
            throw new ArgumentException("participant ids must be distinct and ≥ 0", nameof(participants));
        ArgumentOutOfRangeException.ThrowIfLessThan(threshold, 2);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vectorLength);
        Round = round;
        this.participants = participants.ToHashSet();
        this.threshold = threshold;
        this.neighbours = neighbours;
        this.vectorLength = vectorLength;
        this.shuffle = shuffle;
    }

    /// <summary>The round.</summary>
    public int Round { get; }

    /// <summary>Each participant's neighbours, once keys are collected.</summary>
    public IReadOnlyDictionary<int, IReadOnlyList<int>> Graph => graph;

    /// <summary>Phase 0 → 1: the advertised keys of those that answered (U1), and each one's roster of share holders.</summary>
    public IReadOnlyList<KeyRoster> CollectKeys(IReadOnlyList<AdvertiseKeys> adverts)
    {
        ArgumentNullException.ThrowIfNull(adverts);
        Expect(SecAggPhase.AdvertiseKeys);
        foreach (var a in adverts)
        {
            if (!participants.Contains(a.Client)) throw Fail($"keys from client {a.Client}, who is not a participant", a.Client);
            if (!advertised.TryAdd(a.Client, a)) throw Fail($"client {a.Client} advertised keys twice", a.Client);
        }
        droppedPerPhase[0] = participants.Count - advertised.Count;
        RequireAtLeastThreshold(advertised.Count, "advertised keys");
        graph = NeighbourGraph.Create(advertised.Keys.Order().ToList(), neighbours, shuffle);
        int holders = graph.Values.Min(n => n.Count) + 1;
        if (holders < threshold)
            throw Fail($"with {advertised.Count} clients and {neighbours} neighbours each secret has {holders} holders, fewer than threshold {threshold}");
        return graph.Select(kv => new KeyRoster(Round, kv.Key, threshold, kv.Value.Append(kv.Key).Order().Select(h => advertised[h]).ToList())).ToList();
    }

    /// <summary>Phase 1 → 2: the encrypted shares of those that answered (U2), routed to each of them.</summary>
    public IReadOnlyList<MaskingRequest> CollectShares(IReadOnlyList<SharedKeys> answers)
    {
        ArgumentNullException.ThrowIfNull(answers);
        Expect(SecAggPhase.ShareKeys);
        var byClient = new Dictionary<int, SharedKeys>();
        foreach (var s in answers)
        {
            if (!advertised.ContainsKey(s.Client)) throw Fail($"shares from client {s.Client}, who advertised no keys", s.Client);
            if (!byClient.TryAdd(s.Client, s)) throw Fail($"client {s.Client} shared keys twice", s.Client);
            if (s.SelfMaskCommitment.Length != SHA256.HashSizeInBytes) throw Fail($"client {s.Client}'s commitment is not a SHA-256 hash", s.Client);
            var expected = graph[s.Client];
            if (s.Shares.Any(e => e.From != s.Client) || !s.Shares.Select(e => e.To).Order().SequenceEqual(expected))
                throw Fail($"client {s.Client} did not send exactly one share to each of its {expected.Count} neighbours", s.Client);
            commitments[s.Client] = s.SelfMaskCommitment;
        }
        shared = byClient.Keys.ToHashSet();
        droppedPerPhase[1] = advertised.Count - shared.Count;
        RequireAtLeastThreshold(shared.Count, "shared keys");
        return shared.Order().Select(v => new MaskingRequest(Round, v,
            byClient.Values.Where(s => s.Client != v).SelectMany(s => s.Shares).Where(e => e.To == v).OrderBy(e => e.From).ToList())).ToList();
    }

    /// <summary>Phase 2 → 3: the masked inputs of those that answered (U3); the request for unmasking shares.</summary>
    public UnmaskRequest CollectMaskedInputs(IReadOnlyList<MaskedInput> inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        Expect(SecAggPhase.MaskedInput);
        foreach (var m in inputs)
        {
            if (!shared.Contains(m.Client)) throw Fail($"a masked input from client {m.Client}, who did not share keys", m.Client);
            if (m.Vector.Length != vectorLength) throw Fail($"client {m.Client}'s masked input has {m.Vector.Length} elements, not {vectorLength}", m.Client);
            if (!masked.TryAdd(m.Client, m.Vector)) throw Fail($"client {m.Client} sent two masked inputs", m.Client);
        }
        droppedPerPhase[2] = shared.Count - masked.Count;
        RequireAtLeastThreshold(masked.Count, "sent masked inputs");
        dropped = shared.Where(u => !masked.ContainsKey(u)).Order().ToList();
        return new UnmaskRequest(Round, masked.Keys.Order().ToList(), dropped);
    }

    /// <summary>Phase 3 → result: reconstructs every survivor's b_u and every dropped client's s^SK, checks them against
    /// the commitments, and removes all masks from Σ y_u.</summary>
    public SecAggResult Unmask(IReadOnlyList<UnmaskShares> answers)
    {
        ArgumentNullException.ThrowIfNull(answers);
        Expect(SecAggPhase.Unmask);
        var seedShares = new Dictionary<int, List<ShamirShare>>();
        var keyShares = new Dictionary<int, List<ShamirShare>>();
        var answered = new HashSet<int>();
        foreach (var a in answers)
        {
            if (!masked.ContainsKey(a.Client)) throw Fail($"unmasking shares from client {a.Client}, who is not a survivor", a.Client);
            if (!answered.Add(a.Client)) throw Fail($"client {a.Client} sent unmasking shares twice", a.Client);
            foreach (var share in a.Shares)
            {
                bool holds = share.Owner == a.Client || (graph.TryGetValue(share.Owner, out var n) && n.Contains(a.Client));
                if (!holds) throw Fail($"client {a.Client} revealed a share of client {share.Owner}, which it does not hold", a.Client);
                if (share.Value.Length != ShamirSecretSharing.ShareBytes) throw Fail($"client {a.Client} revealed a malformed share of client {share.Owner}", a.Client);
                var target = share.Kind switch
                {
                    SecretKind.SelfMaskSeed when masked.ContainsKey(share.Owner) => seedShares,
                    SecretKind.MaskingKey when dropped.Contains(share.Owner) => keyShares,
                    _ => throw Fail($"client {a.Client} revealed a {share.Kind} share of client {share.Owner}, which the request did not ask for", a.Client),
                };
                if (!target.TryGetValue(share.Owner, out var list)) target[share.Owner] = list = new List<ShamirShare>();
                list.Add(new ShamirShare(SecAggClient.SharePoint(a.Client), share.Value));
            }
        }
        droppedPerPhase[3] = masked.Count - answered.Count;
        RequireAtLeastThreshold(answered.Count, "sent unmasking shares");

        var sum = new uint[vectorLength];
        foreach (var y in masked.Values) Ring32.AddInPlace(sum, y);
        foreach (int u in masked.Keys.Order())
        {
            byte[] seed = Reconstruct(seedShares, u, "self-mask seed");
            if (!SHA256.HashData(seed).AsSpan().SequenceEqual(commitments[u]))
                throw Fail($"the reconstructed self-mask seed of client {u} does not match its commitment: a share is forged or corrupted", u);
            MaskGenerator.Apply(seed, sum, subtract: true);
        }
        foreach (int u in dropped)
        {
            using var key = KeyAgreement.FromPrivateKey(Reconstruct(keyShares, u, "masking key"));
            if (!key.HasPublicKey(advertised[u].MaskingKey))
                throw Fail($"the reconstructed masking key of client {u} does not match its public key: a share is forged or corrupted", u);
            // Each surviving neighbour v added +PRG(s_uv) if v > u, else −PRG(s_uv); take it back out.
            foreach (int v in graph[u].Where(masked.ContainsKey))
                MaskGenerator.Apply(key.Agree(advertised[v].MaskingKey, SecAggClient.MaskPurpose), sum, subtract: v > u);
        }
        return new SecAggResult(sum, masked.Keys.Order().ToList(), droppedPerPhase.ToArray());
    }

    byte[] Reconstruct(Dictionary<int, List<ShamirShare>> shares, int owner, string what)
    {
        var list = shares.GetValueOrDefault(owner) ?? [];
        if (list.Count < threshold)
            throw Fail($"client {owner}'s {what} has {list.Count} revealed shares, below threshold {threshold}: too many of its neighbours dropped");
        try
        {
            return ShamirSecretSharing.Combine(list);
        }
        catch (SecureAggregationException e)
        {
            throw Fail($"client {owner}'s {what} cannot be reconstructed ({e.Message}): a share is forged or corrupted", owner);
        }
    }

    void RequireAtLeastThreshold(int count, string what)
    {
        if (count < threshold) throw Fail($"only {count} clients {what}, below threshold {threshold}");
    }

    void Expect(SecAggPhase phase)
    {
        if (next != phase) throw Fail($"phase {phase} called while expecting {next}");
        next = phase + 1;
    }

    SecureAggregationException Fail(string problem, int? client = null) => new($"secure aggregation, round {Round}: {problem}", client);
}
