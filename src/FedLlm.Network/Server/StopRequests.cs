namespace FedLlm.Network.Server;

/// <summary>
/// Where requests to stop the server arrive (SIGTERM/SIGINT from the CLI, <c>fedllm admin stop</c> over the network)
/// and who acts on them: the server subscribes once it is running; a request made before that is kept and handed over
/// at subscription.
/// </summary>
/// <remarks>Thread-safe: signal handlers call in from their own thread.</remarks>
public sealed class StopRequests
{
    readonly object gate = new();
    readonly List<(string Reason, bool AbandonRound)> early = new();
    Action<string, bool>? handler;

    /// <param name="abandonRound">True: do not wait for the open round to finish.</param>
    /// <param name="reason">Why, for the log and for the clients.</param>
    public void Request(string reason, bool abandonRound)
    {
        Action<string, bool>? current;
        lock (gate)
        {
            current = handler;
            if (current is null) early.Add((reason, abandonRound));
        }
        current?.Invoke(reason, abandonRound);
    }

    /// <summary>Whether a stop was asked for before anyone subscribed.</summary>
    public bool RequestedEarly
    {
        get { lock (gate) return early.Count > 0; }
    }

    /// <summary>Sets who acts on stop requests, and hands it the requests made before (in order). <paramref
    /// name="onStop"/> gets the reason and whether to abandon the open round.</summary>
    public void Subscribe(Action<string, bool> onStop)
    {
        List<(string, bool)> pending;
        lock (gate)
        {
            handler = onStop;
            pending = early.ToList();
            early.Clear();
        }
        foreach (var (reason, abandon) in pending) onStop(reason, abandon);
    }
}
