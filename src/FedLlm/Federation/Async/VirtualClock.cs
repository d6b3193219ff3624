namespace FedLlm.Federation.Async;

/// <summary>
/// Simulated time for asynchronous federation on one machine: a task of client i started at time t finishes at
/// t + f_i × (local steps), and the event loop always advances to the next finishing task. Ties (equal finishing times)
/// are broken by the order the tasks started in, so the order of events is a function of the speeds and the start
/// order alone, never of wall-clock time or thread scheduling.
/// </summary>
/// <typeparam name="T">What a scheduled task carries.</typeparam>
public sealed class VirtualClock<T>
{
    readonly PriorityQueue<Scheduled, (double Time, long Sequence)> queue = new();

    /// <summary>A task in flight: its start order, when it started and when it finishes.</summary>
    public sealed record Scheduled(long Sequence, double StartedAt, double FinishesAt, T Item);

    /// <summary>The current virtual time: 0 at the start, then the finishing time of the last task taken.</summary>
    public double Now { get; private set; }

    /// <summary>Tasks started and not yet taken.</summary>
    public int Pending => queue.Count;

    /// <summary>Whether a task finishes at exactly <see cref="Now"/> and has not been taken yet.</summary>
    public bool HasTaskFinishingNow => queue.TryPeek(out _, out var key) && key.Time == Now;

    /// <summary>Starts <paramref name="item"/> now; it finishes after <paramref name="duration"/> units.</summary>
    /// <param name="item">What finishes.</param>
    /// <param name="duration">Virtual time units until it finishes (≥ 0).</param>
    /// <param name="sequence">The task's start order (unique, increasing), which breaks ties.</param>
    public Scheduled Start(T item, double duration, long sequence)
    {
        if (!(duration > 0) || double.IsInfinity(duration)) throw new ArgumentOutOfRangeException(nameof(duration), duration, "a task's duration must be finite and positive");
        var task = new Scheduled(sequence, Now, Now + duration, item);
        queue.Enqueue(task, (task.FinishesAt, sequence));
        return task;
    }

    /// <summary>Puts back a task started earlier (resuming a run), keeping its times.</summary>
    public void Restore(Scheduled task) => queue.Enqueue(task, (task.FinishesAt, task.Sequence));

    /// <summary>Sets the time (resuming a run); only before any task is restored or started.</summary>
    public void Reset(double now)
    {
        if (queue.Count > 0) throw new InvalidOperationException("the clock has tasks in flight");
        Now = now;
    }

    /// <summary>Advances to the earliest finishing task (the earliest started among equals) and takes it.</summary>
    /// <exception cref="InvalidOperationException">No task is in flight.</exception>
    public Scheduled Next()
    {
        if (!queue.TryDequeue(out var task, out _)) throw new InvalidOperationException("no task in flight: the clock cannot advance");
        Now = task.FinishesAt;
        return task;
    }

    /// <summary>Every task in flight, in the order they will be taken.</summary>
    public IReadOnlyList<Scheduled> InFlight() =>
        queue.UnorderedItems.Select(x => x.Element).OrderBy(t => t.FinishesAt).ThenBy(t => t.Sequence).ToList();
}
