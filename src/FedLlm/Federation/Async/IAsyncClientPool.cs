using static TorchSharp.torch;

namespace FedLlm.Federation.Async;

/// <summary>
/// Clients that train asynchronously in real time (the network federation): every idle client takes a task on the newest
/// published global version, and finished updates queue, each with the version it was trained from, until the server
/// takes them. The server side of <see cref="RealTimeBufferedAsyncServer"/>; no round barrier.
/// </summary>
public interface IAsyncClientPool
{
    /// <summary>Makes <paramref name="global"/> (copied) version <paramref name="version"/>: from now on idle clients train
    /// from it under <paramref name="instructions"/> (whose <see cref="ClientInstructions.Round"/> is the version). Updates
    /// of older versions keep arriving.</summary>
    void Publish(int version, IReadOnlyDictionary<string, Tensor> global, ClientInstructions instructions);

    /// <summary>Waits until <paramref name="count"/> updates have arrived and takes them, oldest first; the caller owns
    /// their deltas.</summary>
    Task<IReadOnlyList<ArrivedUpdate>> TakeAsync(int count, CancellationToken cancellationToken = default);

    /// <summary>Client-side bookkeeping to commit with each version (a registry of counters), name-keyed.</summary>
    IReadOnlyDictionary<string, Tensor> SnapshotState();

    /// <summary>Restores what <see cref="SnapshotState"/> returned, on resume; the tensors stay the caller's.</summary>
    void RestoreState(IReadOnlyDictionary<string, Tensor> state);

    /// <summary>Wire bytes sent to clients for <paramref name="version"/> so far, or null when nothing crossed a transport.</summary>
    long? BytesSent(int version) => null;
}

/// <summary>One update taken from an <see cref="IAsyncClientPool"/>.</summary>
/// <param name="ClientId">Who trained it.</param>
/// <param name="BaseVersion">The global version it was trained from (0 = the initial adapter).</param>
/// <param name="Delta">Δ = y − x_{BaseVersion}, owned by whoever took the update.</param>
/// <param name="ExampleCount">Examples the client trained on.</param>
/// <param name="TrainLoss">Its mean local training loss (NaN when it reported none).</param>
/// <param name="DeltaNorm">‖Δ‖₂.</param>
/// <param name="Bytes">Wire bytes of the update as received.</param>
/// <param name="StartedAt">Seconds since the pool started when the client took its task.</param>
/// <param name="FinishedAt">Seconds since the pool started when the update arrived.</param>
public sealed record ArrivedUpdate(string ClientId, int BaseVersion, Dictionary<string, Tensor> Delta, long ExampleCount, double TrainLoss, double DeltaNorm,
    long Bytes, double StartedAt, double FinishedAt);
