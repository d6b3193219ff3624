using FedLlm.Federation;
using static TorchSharp.torch;

namespace FedLlm.Monitoring;

/// <summary>
/// Tells a <see cref="RunMonitor"/> which participants train in each round and which of them delivered, around any
/// <see cref="IClientExecutor"/>; every call passes through unchanged, so a monitored run computes what an unmonitored one does.
/// </summary>
public sealed class MonitoredClients(IClientExecutor inner, RunMonitor monitor, Func<int, string> clientId) : IClientExecutor, IDisposable
{
    /// <summary>Tells the monitor who trains, delegates to the inner executor, then tells the monitor whose updates
    /// arrived.</summary>
    public async Task<IReadOnlyList<ClientUpdate>> TrainRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default)
    {
        var sampled = clients.Select(clientId).ToList();
        monitor.RoundStarted(round, sampled);
        var updates = await inner.TrainRoundAsync(round, clients, global, instructions, cancellationToken);
        monitor.RoundClosed(sampled, updates.Select(u => u.ClientId));
        return updates;
    }

    /// <inheritdoc/>
    public Task<IReadOnlyList<ClientEvaluation>> EvaluateRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default) =>
        inner.EvaluateRoundAsync(round, clients, global, instructions, cancellationToken);

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> SnapshotState() => inner.SnapshotState();

    /// <inheritdoc/>
    public void RestoreState(IReadOnlyDictionary<string, Tensor> state) => inner.RestoreState(state);

    /// <inheritdoc/>
    public (long Sent, long Received)? MeasuredTraffic(int round) => inner.MeasuredTraffic(round);

    /// <inheritdoc/>
    public void Release(IReadOnlyList<ClientUpdate> updates) => inner.Release(updates);

    /// <summary>Does not dispose the inner executor: its creator owns it.</summary>
    public void Dispose() { }
}
