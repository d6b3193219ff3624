using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>
/// Where the clients of a round run: in this process (simulation) or behind a network transport. The server's round
/// loop talks only to this, so simulation and deployment share every line of round logic.
/// </summary>
public interface IClientExecutor
{
    /// <summary>Trains the given clients from <paramref name="global"/> under <paramref name="instructions"/>.</summary>
    /// <returns>The updates that arrived (a networked executor may return fewer than asked).</returns>
    Task<IReadOnlyList<ClientUpdate>> TrainRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default);

    /// <summary>Federated evaluation: the given clients score <paramref name="global"/> on their own data.</summary>
    /// <returns>The evaluations that arrived; the default (a transport without evaluation) returns none.</returns>
    Task<IReadOnlyList<ClientEvaluation>> EvaluateRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<ClientEvaluation>>([]);

    /// <summary>Client-side state to commit with the server's (SCAFFOLD's c_i, kept optimizer moments), name-keyed.</summary>
    IReadOnlyDictionary<string, Tensor> SnapshotState();

    /// <summary>Restores what <see cref="SnapshotState"/> returned, on resume; the tensors stay the caller's.</summary>
    void RestoreState(IReadOnlyDictionary<string, Tensor> state);

    /// <summary>Takes back a round's updates once the server is done with them (aggregated, recorded). The default
    /// frees them; a networked executor may keep their memory for the next round's uploads, which then land in pages
    /// the process already has instead of fresh ones.</summary>
    void Release(IReadOnlyList<ClientUpdate> updates)
    {
        foreach (var update in updates) update.DisposeTensors();
    }

    /// <summary>Bytes that crossed the transport in <paramref name="round"/> (to the clients, from them), or null when
    /// nothing crossed one (in-process clients), in which case the server reports the adapter tensors' sizes.</summary>
    (long Sent, long Received)? MeasuredTraffic(int round) => null;
}
