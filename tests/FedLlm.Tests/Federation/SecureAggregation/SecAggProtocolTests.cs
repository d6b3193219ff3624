using FedLlm.Federation.SecureAggregation;

namespace FedLlm.Tests.Federation.SecureAggregation;

/// <summary>The transport-independent protocol: Shamir sharing, quantisation, masks, the four phases with dropouts at
/// each, refusal of bad shares, and the byte codec.</summary>
public class SecAggProtocolTests
{
    static Dictionary<int, uint[]> Inputs(int clients, int length, int seed = 1)
    {
        var random = new Random(seed);
        // Values below 2^24 so that 50 of them cannot wrap the ring, as quantised inputs never do.
        return Enumerable.Range(0, clients).ToDictionary(i => i, _ => Enumerable.Range(0, length).Select(_ => (uint)random.Next(1 << 24)).ToArray());
    }

    static uint[] PlainSum(IEnumerable<uint[]> inputs)
    {
        uint[]? sum = null;
        foreach (var x in inputs)
        {
            sum ??= new uint[x.Length];
            Ring32.AddInPlace(sum, x);
        }
        return sum!;
    }

    [Fact]
    public void Any_threshold_shares_rebuild_a_secret_and_fewer_do_not()
    {
        var secret = Enumerable.Range(1, 32).Select(i => (byte)(i * 7)).ToArray();
        var shares = ShamirSecretSharing.Split(secret, 3, [1, 2, 3, 4, 5]);
        Assert.Equal(secret, ShamirSecretSharing.Combine([shares[4], shares[0], shares[2]]));
        Assert.Equal(secret, ShamirSecretSharing.Combine([shares[1], shares[3], shares[4]]));
        Assert.Equal(secret, ShamirSecretSharing.Combine(shares));
        // Two shares of a degree-2 polynomial give the line through them, not f(0) (almost surely not even 32 bytes).
        Assert.ThrowsAny<Exception>(() => Assert.Equal(secret, ShamirSecretSharing.Combine([shares[0], shares[1]])));
    }

    [Fact]
    public void Quantisation_error_stays_within_the_stated_bound_and_sums_decode()
    {
        var q = new FixedPointQuantiser(bits: 12, range: 0.5);
        var random = new Random(3);
        var values = Enumerable.Range(0, 10_000).Select(_ => (random.NextDouble() - 0.5)).ToArray();
        double worst = values.Max(x => Math.Abs(q.DecodeSum(q.Quantise(x), 1) - x));
        Assert.True(worst <= q.ErrorBound * (1 + 1e-9), $"worst {worst} above bound {q.ErrorBound}");
        Assert.True(worst > q.ErrorBound / 2, "12 bits must show an error near the bound, else the test checks nothing");
        Assert.Equal(0.5, q.DecodeSum(q.Quantise(7.0), 1), 12); // clamped to r
        uint sum = (uint)values.Take(100).Sum(x => (long)q.Quantise(x));
        Assert.InRange(q.DecodeSum(sum, 100) - values.Take(100).Sum(), -100 * q.ErrorBound, 100 * q.ErrorBound);
        Assert.Equal(256, FixedPointQuantiser.MaxSummands(24));
    }

    [Fact]
    public void A_masked_input_is_uniform_on_the_ring_and_unlike_the_plain_one()
    {
        // Prepare: inputs that are far from uniform (every element the same quantised zero).
        const int length = 65_536;
        var inputs = Enumerable.Range(0, 4).ToDictionary(i => i, _ => Enumerable.Repeat(1u << 23, length).ToArray());
        var server = new SecAggServer(0, [0, 1, 2, 3], threshold: 3, neighbours: null, vectorLength: length);
        var clients = inputs.Keys.ToDictionary(i => i, i => new SecAggClient(0, i));
        var rosters = server.CollectKeys(clients.Values.Select(c => c.Advertise()).ToList());
        var requests = server.CollectShares(rosters.Select(r => clients[r.Client].ShareKeys(r)).ToList());

        // Execute
        var masked = clients[2].Mask(requests.Single(r => r.Client == 2), inputs[2]).Vector;

        // Assert: χ² of the top byte over 256 bins, df 255: 330.5 is the 0.1 % critical value; the plain input is one bin.
        static double ChiSquare(uint[] v)
        {
            var counts = new long[256];
            foreach (uint x in v) counts[x >> 24]++;
            double expected = v.Length / 256.0;
            return counts.Sum(c => (c - expected) * (c - expected) / expected);
        }
        Assert.InRange(ChiSquare(masked), 0, 330.5);
        Assert.True(ChiSquare(inputs[2]) > 1e6);
        Assert.True(masked.Zip(inputs[2]).Count(p => p.First == p.Second) < 10, "the masked input must differ from the plain one almost everywhere");
        // Low bits too: the masks are uniform on the whole ring, not only the top byte.
        var low = new long[256];
        foreach (uint x in masked) low[x & 0xFF]++;
        Assert.InRange(low.Sum(c => (c - 256.0) * (c - 256.0) / 256.0), 0, 330.5);
        foreach (var c in clients.Values) c.Dispose();
    }

    [Theory]
    [InlineData(5, null)]
    [InlineData(10, 4)]
    public void The_unmasked_sum_is_the_exact_sum_of_the_inputs(int clients, int? neighbours)
    {
        var inputs = Inputs(clients, 1000);
        var (result, traffic) = InProcessSecAgg.Run(3, inputs, threshold: neighbours is null ? 3 : 3, neighbours);
        Assert.Equal(PlainSum(inputs.Values), result.Sum);
        Assert.Equal(Enumerable.Range(0, clients), result.Survivors);
        Assert.True(traffic.ToServer > clients * 1000 * 4, "the masked inputs cross in their byte form");
    }

    [Fact]
    public void A_sparse_graph_gives_each_client_exactly_k_neighbours_symmetrically()
    {
        var graph = NeighbourGraph.Create(Enumerable.Range(0, 50).ToList(), 6);
        Assert.All(graph, kv => Assert.Equal(6, kv.Value.Count));
        Assert.All(graph, kv => Assert.All(kv.Value, v => Assert.Contains(kv.Key, graph[v])));
        Assert.Equal(9, NeighbourGraph.Create(Enumerable.Range(0, 10).ToList(), 12)[0].Count + 0); // k ≥ n − 1: everyone
    }

    [Theory]
    [InlineData(SecAggPhase.ShareKeys, new[] { 1, 4 })]   // dropped after advertising keys
    [InlineData(SecAggPhase.MaskedInput, new[] { 1, 4 })] // dropped after sharing keys: their pairwise masks must go
    [InlineData(SecAggPhase.Unmask, new int[0])]          // dropped after sending the masked input: still in the sum
    public void Dropouts_at_each_phase_leave_the_sum_of_the_survivors(SecAggPhase phase, int[] missing)
    {
        var inputs = Inputs(7, 500, seed: (int)phase);
        int[] dropping = [1, 4];
        var (result, _) = InProcessSecAgg.Run(1, inputs, threshold: 4, neighbours: null, (id, p) => p == phase && dropping.Contains(id));
        var expected = inputs.Keys.Where(i => !missing.Contains(i)).ToList();
        Assert.Equal(expected, result.Survivors);
        Assert.Equal(PlainSum(expected.Select(i => inputs[i])), result.Sum);
        Assert.Equal(2, result.DroppedPerPhase[(int)phase]);
    }

    [Fact]
    public void Dropouts_with_sparse_neighbours_are_recovered_too()
    {
        var inputs = Inputs(12, 300);
        var (result, _) = InProcessSecAgg.Run(2, inputs, threshold: 3, neighbours: 4, (id, p) => p == SecAggPhase.MaskedInput && id is 0 or 7);
        var expected = inputs.Keys.Where(i => i is not 0 and not 7).ToList();
        Assert.Equal(PlainSum(expected.Select(i => inputs[i])), result.Sum);
    }

    [Theory]
    [InlineData(SecAggPhase.ShareKeys, "shared keys")]
    [InlineData(SecAggPhase.MaskedInput, "sent masked inputs")]
    [InlineData(SecAggPhase.Unmask, "sent unmasking shares")]
    public void Fewer_survivors_than_the_threshold_fail_the_round_cleanly(SecAggPhase phase, string where)
    {
        var inputs = Inputs(5, 50);
        var error = Assert.Throws<SecureAggregationException>(() =>
            InProcessSecAgg.Run(0, inputs, threshold: 4, neighbours: null, (id, p) => p == phase && id < 2));
        Assert.Contains($"only 3 clients {where}, below threshold 4", error.Message);
    }

    [Fact]
    public void A_tampered_share_is_refused_by_its_receiver()
    {
        var server = new SecAggServer(0, [0, 1, 2], threshold: 2, neighbours: null, vectorLength: 4);
        var clients = Enumerable.Range(0, 3).Select(i => new SecAggClient(0, i)).ToList();
        var rosters = server.CollectKeys(clients.Select(c => c.Advertise()).ToList());
        var requests = server.CollectShares(rosters.Select(r => clients[r.Client].ShareKeys(r)).ToList());
        var request = requests.Single(r => r.Client == 0);
        var share = request.Shares[0];
        var flipped = share.Ciphertext.ToArray();
        flipped[20] ^= 1;
        var tampered = request with { Shares = [share with { Ciphertext = flipped }, .. request.Shares.Skip(1)] };
        var error = Assert.Throws<SecureAggregationException>(() => clients[0].Mask(tampered, new uint[4]));
        Assert.Contains($"share from client {share.From} fails authentication", error.Message);
        // Redirected to another holder: the associated data names the holder, so it fails too.
        var redirected = requests.Single(r => r.Client == 1) with { Shares = [share with { To = 1 }] };
        Assert.Throws<SecureAggregationException>(() => clients[1].Mask(redirected, new uint[4]));
    }

    [Theory]
    [InlineData(SecretKind.SelfMaskSeed, "self-mask seed")]
    [InlineData(SecretKind.MaskingKey, "masking key")]
    public void A_forged_revealed_share_fails_the_round_instead_of_releasing_a_wrong_sum(SecretKind kind, string what)
    {
        // Prepare: 4 clients, threshold 3; client 3 drops after sharing, so the others reveal its masking key.
        var server = new SecAggServer(0, [0, 1, 2, 3], threshold: 3, neighbours: null, vectorLength: 8);
        var clients = Enumerable.Range(0, 4).Select(i => new SecAggClient(0, i)).ToList();
        var rosters = server.CollectKeys(clients.Select(c => c.Advertise()).ToList());
        var requests = server.CollectShares(rosters.Select(r => clients[r.Client].ShareKeys(r)).ToList());
        var unmask = server.CollectMaskedInputs(requests.Where(r => r.Client != 3).Select(r => clients[r.Client].Mask(r, new uint[8])).ToList());
        var answers = unmask.Survivors.Select(i => clients[i].Unmask(unmask)).ToList();
        int owner = kind == SecretKind.MaskingKey ? 3 : 1;

        // Execute: client 0's share of the owner's secret is altered.
        var forged = answers[0] with
        {
            Shares = answers[0].Shares.Select(s => s.Owner == owner && s.Kind == kind ? s with { Value = Flip(s.Value) } : s).ToList(),
        };
        var error = Assert.Throws<SecureAggregationException>(() => server.Unmask([forged, .. answers.Skip(1)]));

        // Assert
        Assert.Contains($"client {owner}", error.Message);
        Assert.Contains(what, error.Message);
        Assert.Contains("forged or corrupted", error.Message);

        static byte[] Flip(byte[] value)
        {
            var copy = value.ToArray();
            copy[^1] ^= 0x5A;
            return copy;
        }
    }

    [Fact]
    public void A_client_refuses_to_reveal_both_secrets_of_one_neighbour()
    {
        var server = new SecAggServer(0, [0, 1, 2], threshold: 2, neighbours: null, vectorLength: 2);
        var clients = Enumerable.Range(0, 3).Select(i => new SecAggClient(0, i)).ToList();
        var rosters = server.CollectKeys(clients.Select(c => c.Advertise()).ToList());
        var requests = server.CollectShares(rosters.Select(r => clients[r.Client].ShareKeys(r)).ToList());
        foreach (var r in requests) clients[r.Client].Mask(r, new uint[2]);
        var error = Assert.Throws<SecureAggregationException>(() => clients[0].Unmask(new UnmaskRequest(0, [0, 1, 2], [1])));
        Assert.Contains("both as survivor and as dropped", error.Message);
    }

    [Fact]
    public void Messages_round_trip_through_bytes_and_truncated_ones_are_refused()
    {
        var message = new SharedKeys(3, new byte[32], [new EncryptedShare(3, 5, new byte[12], new byte[140], new byte[16])]);
        var bytes = SecAggCodec.Encode(message);
        var back = SecAggCodec.Decode<SharedKeys>(bytes);
        Assert.Equal(5, back.Shares[0].To);
        Assert.Equal(140, back.Shares[0].Ciphertext.Length);
        var error = Assert.Throws<SecureAggregationException>(() => SecAggCodec.Decode<SharedKeys>(bytes[..^5]));
        Assert.Contains("malformed secure-aggregation message", error.Message);
        Assert.Throws<SecureAggregationException>(() => SecAggCodec.Decode<MaskedInput>(bytes));
    }
}
