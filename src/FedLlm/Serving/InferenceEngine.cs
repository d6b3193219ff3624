using System.Threading.Channels;

namespace FedLlm.Serving;

/// <summary>Limits of the engine's queue and batches.</summary>
public sealed record EngineOptions
{
    /// <summary>Sequences decoded together in one batch.</summary>
    public int MaxBatchSize { get; init; } = 8;

    /// <summary>Requests that may wait for a batch (those not yet decoding); one more is refused (HTTP 429).</summary>
    public int MaxQueue { get; init; } = 32;

    /// <summary>How long the worker waits for more requests to fill a batch once one has arrived.</summary>
    public TimeSpan BatchWindow { get; init; } = TimeSpan.FromMilliseconds(5);

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The batch size or queue length is not positive, or the batch
    /// window is negative.</exception>
    public void Validate()
    {
        if (MaxBatchSize <= 0) throw new ArgumentOutOfRangeException(nameof(MaxBatchSize), MaxBatchSize, "max-batch-size must be positive");
        if (MaxQueue <= 0) throw new ArgumentOutOfRangeException(nameof(MaxQueue), MaxQueue, "max-queue must be positive");
        if (BatchWindow < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(BatchWindow), BatchWindow, "must be ≥ 0");
    }
}

/// <summary>
/// The serving loop: requests wait in a bounded queue; one worker thread takes up to <see cref="EngineOptions.MaxBatchSize"/>
/// of them (whatever adapters they ask for) and decodes them as one batch while new requests queue for the next.
/// </summary>
/// <remarks>
/// One thread runs every forward pass, so the model and the adapter routing are never touched concurrently.
/// <see cref="TrySubmit"/> is thread-safe. Observers are called on the worker thread.
/// </remarks>
public sealed class InferenceEngine : IDisposable
{
    private readonly IBatchDecoder decoder;
    private readonly EngineOptions options;
    private readonly Channel<BatchEntry> queue;
    private readonly CancellationTokenSource stopping = new();
    private readonly Thread worker;
    private int queued;
    private int running;

    /// <summary>Starts the worker thread that batches queued requests and hands them to <paramref name="decoder"/>;
    /// <paramref name="options"/> are validated here.</summary>
    public InferenceEngine(IBatchDecoder decoder, EngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        options.Validate();
        this.decoder = decoder;
        this.options = options;
        queue = Channel.CreateUnbounded<BatchEntry>(new UnboundedChannelOptions { SingleReader = true });
        worker = new Thread(Work) { IsBackground = true, Name = "fedllm-serve-decoder" };
        worker.Start();
    }

    /// <summary>Requests waiting for a batch.</summary>
    public int Queued => Volatile.Read(ref queued);

    /// <summary>Sequences in the batch being decoded.</summary>
    public int Running => Volatile.Read(ref running);

    /// <summary>Queues a sequence; false when the queue is full (the caller answers 429).</summary>
    public bool TrySubmit(SequenceRequest request, ISequenceObserver observer)
    {
        ObjectDisposedException.ThrowIf(stopping.IsCancellationRequested, this);
        if (Interlocked.Increment(ref queued) > options.MaxQueue)
        {
            Interlocked.Decrement(ref queued);
            return false;
        }
        if (!queue.Writer.TryWrite(new BatchEntry(request, observer)))
        {
            Interlocked.Decrement(ref queued);
            return false;
        }
        return true;
    }

    void Work()
    {
        var token = stopping.Token;
        var reader = queue.Reader;
        while (!token.IsCancellationRequested)
        {
            BatchEntry first;
            try
            {
                if (!reader.WaitToReadAsync(token).AsTask().GetAwaiter().GetResult()) return;
                if (!reader.TryRead(out first!)) continue;
            }
            catch (OperationCanceledException) { return; }
            var batch = new List<BatchEntry> { first };
            var deadline = DateTime.UtcNow + options.BatchWindow;
            while (batch.Count < options.MaxBatchSize)
            {
                if (reader.TryRead(out var next)) { batch.Add(next); continue; }
                if (DateTime.UtcNow >= deadline) break;
                Thread.Sleep(1);
            }
            Interlocked.Add(ref queued, -batch.Count);
            Interlocked.Exchange(ref running, batch.Count);
            var live = batch.Where(e => !e.Observer.Abandoned).ToList();
            try
            {
                decoder.Decode(live, token);
            }
            catch (Exception e)
            {
                foreach (var entry in live) entry.Observer.OnFailed(e);
            }
            finally
            {
                Interlocked.Exchange(ref running, 0);
            }
        }
    }

    /// <summary>Stops the worker after its current batch; requests still queued fail with
    /// <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (stopping.IsCancellationRequested) return;
        stopping.Cancel();
        queue.Writer.TryComplete();
        worker.Join();
        while (queue.Reader.TryRead(out var entry)) entry.Observer.OnFailed(new ObjectDisposedException(nameof(InferenceEngine)));
        stopping.Dispose();
    }
}
