namespace FedLlm.Federation.SecureAggregation;

/// <summary>Bytes of protocol messages that crossed between server and clients in one round (each message in its
/// <see cref="SecAggCodec"/> form), down to the clients and up to the server.</summary>
public sealed record SecAggTraffic(long ToClients, long ToServer);

/// <summary>
/// Runs all four phases of one round between a <see cref="SecAggServer"/> and <see cref="SecAggClient"/>s in this
/// process, passing every message through its byte form so that the simulation exercises the codec and counts the
/// traffic a transport would carry. A client may be made to fall away before any phase (simulated dropouts).
/// </summary>
public static class InProcessSecAgg
{
    /// <summary>Secure sum of <paramref name="inputs"/> (participant id → ring vector, all of one length).</summary>
    /// <param name="dropsBefore">(client, phase) → whether the client falls away before sending that phase's message;
    /// null = nobody drops.</param>
    /// <exception cref="SecureAggregationException">The round cannot finish (fewer than t answers, a bad share …).</exception>
    /// <param name="round">The round number, bound into every message.</param>
    /// <param name="inputs">Participant id → quantised update (ring elements mod 2^32), all of one length.</param>
    /// <param name="threshold">t ≥ 2: shares needed to rebuild a secret, and answers needed in every phase.</param>
    /// <param name="neighbours">k (even) for SecAgg+; null = every pair (SecAgg).</param>
    /// <param name="shuffle">Orders the sparse graph's ring (tests); null = cryptographic.</param>
    public static (SecAggResult Result, SecAggTraffic Traffic) Run(int round, IReadOnlyDictionary<int, uint[]> inputs, int threshold, int? neighbours,
        Func<int, SecAggPhase, bool>? dropsBefore = null, Func<int, int>? shuffle = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (inputs.Count == 0) throw new ArgumentException("no inputs", nameof(inputs));
        int length = inputs.Values.First().Length;
        dropsBefore ??= (_, _) => false;
        long down = 0, up = 0;
        T Down<T>(T message) where T : class => Carry(message, ref down);
        T Up<T>(T message) where T : class => Carry(message, ref up);

        var server = new SecAggServer(round, inputs.Keys.Order().ToList(), threshold, neighbours, length, shuffle);
        var clients = inputs.Keys.Order().ToDictionary(id => id, id => new SecAggClient(round, id));
        try
        {
            bool Alive(int id, SecAggPhase phase) => !dropsBefore(id, phase);
            var rosters = server.CollectKeys(clients.Values.Where(c => Alive(c.Client, SecAggPhase.AdvertiseKeys)).Select(c => Up(c.Advertise())).ToList());

            var shared = new List<SharedKeys>();
            foreach (var roster in rosters.Select(Down))
                if (Alive(roster.Client, SecAggPhase.ShareKeys))
                    shared.Add(Up(clients[roster.Client].ShareKeys(roster)));
            var requests = server.CollectShares(shared);

            var maskedInputs = new List<MaskedInput>();
            foreach (var request in requests.Select(Down))
                if (Alive(request.Client, SecAggPhase.MaskedInput))
                    maskedInputs.Add(Up(clients[request.Client].Mask(request, inputs[request.Client])));
            var unmask = server.CollectMaskedInputs(maskedInputs);

            var answers = new List<UnmaskShares>();
            foreach (int id in unmask.Survivors)
            {
                var received = Down(unmask);
                if (Alive(id, SecAggPhase.Unmask)) answers.Add(Up(clients[id].Unmask(received)));
            }
            return (server.Unmask(answers), new SecAggTraffic(down, up));
        }
        finally
        {
            foreach (var c in clients.Values) c.Dispose();
        }
    }

    static T Carry<T>(T message, ref long bytes) where T : class
    {
        var payload = SecAggCodec.Encode(message);
        bytes += payload.Length;
        return SecAggCodec.Decode<T>(payload);
    }
}
