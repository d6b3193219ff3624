using FedLlm.Modeling;

namespace FedLlm.Training;

/// <summary>How many labelled rows the loss projects onto the vocabulary at once (<see cref="TrainingOptions.LossChunkTokens"/>).</summary>
/// <remarks>
/// Each chunk allocates its logits, their float32 copy, log-softmax and their gradients, each rows × vocabulary. Left at
/// 0, the chunk is as many rows as keep one float32 logits tensor within <see cref="AutomaticBytes"/>. The bound is
/// about speed as much as memory: glibc serves a block of more than 64 MiB requested from any thread but the process's
/// first with a mapping of its own, unmapped at free, so 1024 rows of a 49k vocabulary (200 MB per tensor) were faulted
/// in and zeroed by the kernel afresh for every chunk of every step, whatever the allocator policy
/// (<see cref="Runtime.AllocatorPolicy"/>). Smaller chunks cost nothing measurable: the head's matrix product stays
/// wide (rows × hidden × vocabulary).
/// </remarks>
public static class LossChunk
{
    /// <summary>The float32 logits of one automatic chunk stay within this many bytes.</summary>
    public const long AutomaticBytes = 32L << 20;

    /// <summary><paramref name="configured"/> when positive; otherwise the automatic size for <paramref name="vocabularySize"/>.</summary>
    public static int Rows(int configured, long vocabularySize)
    {
        if (configured < 0) throw new ArgumentOutOfRangeException(nameof(configured), configured, "loss chunk rows must be ≥ 0 (0 = automatic)");
        if (configured > 0) return configured;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabularySize);
        return (int)Math.Max(1, AutomaticBytes / (vocabularySize * sizeof(float)));
    }

    /// <summary>The chunk rows for <paramref name="model"/>'s vocabulary.</summary>
    public static int Rows(int configured, LlamaForCausalLM model) => Rows(configured, model.Config.VocabSize);
}
