using System.Threading.Channels;

namespace FedLlm.Serving;

/// <summary>One thing that happened to a sequence: text, its end, or a failure.</summary>
public sealed record SequenceEvent(string? Text, FinishReason? Finish = null, int CompletionTokens = 0, Exception? Error = null);

/// <summary>Passes a sequence's events from the decoding thread to the request that waits for them.</summary>
public sealed class ChannelObserver(CancellationToken abandoned) : ISequenceObserver
{
    private readonly Channel<SequenceEvent> events = Channel.CreateUnbounded<SequenceEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    /// <summary>The sequence's events, in order, for the request to read; completed after the end or a
    /// failure.</summary>
    public ChannelReader<SequenceEvent> Events => events.Reader;

    /// <inheritdoc/>
    public bool Abandoned => abandoned.IsCancellationRequested;

    /// <inheritdoc/>
    public void OnText(string delta) => events.Writer.TryWrite(new SequenceEvent(delta));

    /// <inheritdoc/>
    public void OnFinished(FinishReason reason, int completionTokens)
    {
        events.Writer.TryWrite(new SequenceEvent(null, reason, completionTokens));
        events.Writer.TryComplete();
    }

    /// <inheritdoc/>
    public void OnFailed(Exception error)
    {
        events.Writer.TryWrite(new SequenceEvent(null, Error: error));
        events.Writer.TryComplete();
    }
}
