using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>
/// A federated learning algorithm's server side, shaped like Flower's Strategy: which clients train, what they are told
/// (<see cref="ConfigureTrain"/>), how their updates become the next global adapter (<see cref="Aggregate"/>), and how
/// clients' evaluations are combined (<see cref="ConfigureEvaluate"/>, <see cref="AggregateEvaluate"/>).
/// </summary>
/// <remarks>
/// <para>Implementations are not thread-safe: the round loop calls them one round at a time. Adding an algorithm means
/// adding a class (and, if it acts on the client, an <see cref="IClientHooks"/>) and registering both in an
/// <see cref="AlgorithmRegistry"/>; nothing in the core or on the wire changes.</para>
/// <para>Tensor ownership: arguments are never modified or disposed. Returned tensors are new; they are created in the
/// caller's current <c>DisposeScope</c> if there is one (detach them to keep them past it), else they are owned by the
/// caller outright. Built-in strategies that hold state also implement <see cref="IDisposable"/> to free it early.</para>
/// </remarks>
public interface IFederatedStrategy
{
    /// <summary>The algorithm's name as used in configuration ("fedavg", "scaffold" …).</summary>
    string Name { get; }

    /// <summary>The clients (indices into all <see cref="FederationOptions.TotalClients"/>) that train in
    /// <paramref name="round"/>. The default is OpenFedLLM's seeded sample (<see cref="RoundSchedule.SampleClients"/>),
    /// a pure function of (seed, round) so a resumed run samples the same clients.</summary>
    IReadOnlyList<int> SampleClients(int round, FederationOptions options) => RoundSchedule.SampleClients(round, options);

    /// <summary>What each sampled client must do in <paramref name="round"/>: hooks, config and tensor sets.</summary>
    ClientInstructions ConfigureTrain(int round, double learningRate);

    /// <summary>New global adapter from the old one and the round's updates (≥ 1). Must not modify its inputs; returns
    /// new tensors. Throws <see cref="Aggregation.AggregationException"/>, naming the client and key, when an update does
    /// not have exactly the global's keys, shapes and dtypes; the strategy's state is then unchanged.</summary>
    IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates);

    /// <summary>Instructions for federated evaluation of the new global adapter on the clients' own data in
    /// <paramref name="round"/>, or null for none (the default: the server's held-out evaluation only).</summary>
    ClientInstructions? ConfigureEvaluate(int round) => null;

    /// <summary>One set of metrics from the clients' evaluations; the default is each metric's example-weighted mean.</summary>
    IReadOnlyDictionary<string, double> AggregateEvaluate(int round, IReadOnlyList<ClientEvaluation> results) =>
        ClientEvaluation.WeightedMean(results);

    /// <summary>The round's record with what the strategy knows about the round it just aggregated (a DP decorator adds
    /// the privacy spent so far); the default returns it unchanged. Called once per round, after <see cref="Aggregate"/>
    /// succeeded and before the round is committed.</summary>
    RoundRecord Annotate(RoundRecord record) => record;

    /// <summary>Server-side state (momentum, moments, SCAFFOLD's c), name-keyed, for atomic checkpoints; empty for
    /// stateless strategies. Each read returns a fresh copy that the caller owns.</summary>
    IReadOnlyDictionary<string, Tensor> State { get; }

    /// <summary>Replaces the server-side state with a copy of <paramref name="state"/> (as read from <see cref="State"/>);
    /// an empty dictionary resets it to the algorithm's initial state.</summary>
    void LoadState(IReadOnlyDictionary<string, Tensor> state);
}
