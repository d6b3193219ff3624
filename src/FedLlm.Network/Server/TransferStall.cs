namespace FedLlm.Network.Server;

/// <summary>A transfer's cancellation (bulk connection or streaming RPC): the connection's or call's own, which also
/// fires when no data has moved for <see cref="Timeout"/> (<see cref="RemoteClientsOptions.TransferStallTimeout"/>); each
/// sign of progress restarts the clock.</summary>
sealed class TransferStall : IDisposable
{
    readonly CancellationToken connection;
    readonly CancellationTokenSource source;

    public TransferStall(CancellationToken connection, TimeSpan timeout)
    {
        this.connection = connection;
        Timeout = timeout;
        source = CancellationTokenSource.CreateLinkedTokenSource(connection);
        source.CancelAfter(timeout);
    }

    public TimeSpan Timeout { get; }

    public CancellationToken Token => source.Token;

    /// <summary>Whether the stall, not the connection's end or the server's stop, cancelled the transfer.</summary>
    public bool Fired => source.IsCancellationRequested && !connection.IsCancellationRequested;

    /// <summary>Data moved: the clock starts again.</summary>
    public void Progress()
    {
        if (!source.IsCancellationRequested) source.CancelAfter(Timeout);
    }

    public void Dispose() => source.Dispose();
}
