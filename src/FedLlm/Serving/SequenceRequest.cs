using FedLlm.Generation;

namespace FedLlm.Serving;

/// <summary>Why a sequence stopped, in OpenAI's words: "stop" (end-of-sequence token or a stop string) or "length".</summary>
public enum FinishReason
{
    /// <summary>An end-of-sequence token or a stop string ended the sequence.</summary>
    Stop,

    /// <summary>The token budget or the context length ran out.</summary>
    Length,
}

/// <summary>One prompt to continue: its token ids, the adapter slot, and its own sampling settings.</summary>
/// <param name="PromptIds">The encoded prompt (special tokens included as the prompt format wants).</param>
/// <param name="AdapterSlot">An <see cref="AdapterBank"/> slot, or <see cref="AdapterBank.BaseSlot"/>.</param>
/// <param name="Options">Budget, temperature, top-p/top-k, stop strings and seed of this sequence alone.</param>
public sealed record SequenceRequest(long[] PromptIds, int AdapterSlot, GenerationOptions Options);

/// <summary>Receives a sequence's text as it is decoded; called on the decoding thread, so it must not block.</summary>
public interface ISequenceObserver
{
    /// <summary>New text, final (stop strings already cut off).</summary>
    void OnText(string delta);

    /// <summary>The sequence ended; <paramref name="completionTokens"/> counts the generated tokens (EOS excluded).</summary>
    void OnFinished(FinishReason reason, int completionTokens);

    /// <summary>Decoding failed; no more calls follow.</summary>
    void OnFailed(Exception error);

    /// <summary>True once the consumer has gone (a closed connection): the decoder stops this sequence early.</summary>
    bool Abandoned => false;
}
