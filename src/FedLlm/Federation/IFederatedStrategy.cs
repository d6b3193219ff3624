using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>
/// A federated learning algorithm's server side: what it asks of clients each round and how it turns their updates into
/// the next global adapter.
/// </summary>
/// <remarks>
/// <para>Implementations are not thread-safe: the round loop calls them one round at a time. Adding an algorithm means
/// adding a class, never editing a switch; the only name lookup is <see cref="StrategyFactory"/>.</para>
/// <para>Tensor ownership: arguments are never modified or disposed. Returned tensors are new; they are created in the
/// caller's current <c>DisposeScope</c> if there is one (detach them to keep them past it), else they are owned by the
/// caller outright. Built-in strategies that hold state also implement <see cref="IDisposable"/> to free it early.</para>
/// </remarks>
public interface IFederatedStrategy
{
    /// <summary>The algorithm's name as used in configuration: "fedavg", "fedprox", "scaffold", "fedavgm", "fedadagrad",
    /// "fedyogi" or "fedadam".</summary>
    string Name { get; }

    /// <summary>What each sampled client must do in <paramref name="round"/> besides plain local training.</summary>
    ClientRoundPlan PlanClientRound(int round, double learningRate);

    /// <summary>New global adapter from the old one and the round's updates (≥ 1). Must not modify its inputs; returns
    /// new tensors. Throws <see cref="Aggregation.AggregationException"/>, naming the client and key, when an update does
    /// not have exactly the global's keys, shapes and dtypes; the strategy's state is then unchanged.</summary>
    IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates);

    /// <summary>Server-side state (momentum, moments, SCAFFOLD's c), name-keyed, for atomic checkpoints; empty for
    /// stateless strategies. Each read returns a fresh copy that the caller owns.</summary>
    IReadOnlyDictionary<string, Tensor> State { get; }

    /// <summary>Replaces the server-side state with a copy of <paramref name="state"/> (as read from <see cref="State"/>);
    /// an empty dictionary resets it to the algorithm's initial state.</summary>
    void LoadState(IReadOnlyDictionary<string, Tensor> state);
}
