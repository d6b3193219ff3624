using FedLlm.Runtime;
using FedLlm.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Training;

/// <summary>
/// Forward and backward of the causal-LM loss without materialising the logits of the whole batch.
/// </summary>
/// <remarks>
/// The vocabulary projection dominates activation memory (batch 4 × 512 tokens × 49k vocabulary is 400 MB of fp32 logits,
/// doubled by softmax and again by its gradient). The loss only needs rows whose next-token label is not −100, so the
/// step (1) runs the decoder to the final hidden states, (2) keeps the labelled rows, (3) projects and back-propagates
/// them chunk by chunk into a detached copy of those hidden states, freeing each chunk's logits at once, and
/// (4) back-propagates the accumulated hidden-state gradient through the decoder. The result equals
/// <c>CausalLmLoss(...).backward()</c> up to float summation order.
/// With <see cref="LlamaForCausalLM.ActivationCheckpointing"/>, step (1) keeps only each layer's input and step (4)
/// recomputes the layers one at a time (<see cref="CheckpointedDecoder"/>).
/// </remarks>
public static class CausalLmStep
{
    /// <summary>Computes loss × <paramref name="lossScale"/>, accumulates its gradients, and returns the (unscaled) mean loss.</summary>
    /// <param name="inputIds">(B, T) int64.</param>
    /// <param name="labels">(B, T) int64 with −100 where no loss is taken.</param>
    /// <param name="attentionMask">(B, T) or null for right-padded batches (padding sits after every real token, so plain causal attention is exact for them).</param>
    /// <param name="lossScale">Multiplies the gradient, e.g. 1 / accumulation steps.</param>
    /// <param name="model">The model with LoRA injected, in train mode; only the adapters get gradients.</param>
    /// <param name="chunkTokens">Labelled rows projected onto the vocabulary at once, 0 = automatic
    /// (<see cref="TrainingOptions.LossChunkTokens"/>, <see cref="LossChunk"/>).</param>
    public static (double Loss, long LabelledTokens) ForwardBackward(
        LlamaForCausalLM model, Tensor inputIds, Tensor labels, Tensor? attentionMask, double lossScale, int chunkTokens)
    {
        using var scope = NewDisposeScope();
        long T = inputIds.shape[1];
        var (hidden, decoder) = CheckpointedDecoder.HiddenStates(model, inputIds, attentionMask); // (B, T, H)
        using var _decoder = decoder;
        var shiftedHidden = hidden.narrow(1, 0, T - 1).reshape(-1, hidden.shape[2]); // (B*(T-1), H)
        var shiftedLabels = labels.narrow(1, 1, T - 1).reshape(-1);                  // (B*(T-1))
        var rows = shiftedLabels.ne(Runtime.Scalars.IgnoredLabel).nonzero().squeeze(-1); // (N)
        long labelled = rows.shape[0];
        if (labelled == 0) return (0.0, 0);

        var selectedHidden = shiftedHidden.index_select(0, rows);                    // (N, H), in the graph
        var selectedLabels = shiftedLabels.index_select(0, rows);                    // (N)
        var leaf = selectedHidden.detach().requires_grad_(true);                     // (N, H), graph stops here
        double lossSum = 0;
        int chunk = LossChunk.Rows(chunkTokens, model);
        // Named, not implicit: a temporary Scalar's finalizer can free it while libtorch still reads it (AdamW.Step).
        using var gradientScale = (lossScale / labelled).ToScalar();
        for (long start = 0; start < labelled; start += chunk)
        {
            using var chunkScope = NewDisposeScope();
            long length = Math.Min(chunk, labelled - start);
            var logits = model.Head(leaf.narrow(0, start, length));                 // (n, V)
            var logits32 = logits.dtype == ScalarType.Float64 ? logits : logits.to(ScalarType.Float32);
            var chunkLoss = nn.functional.cross_entropy(logits32, selectedLabels.narrow(0, start, length), reduction: nn.Reduction.Sum);
            lossSum += chunkLoss.ToScalarDouble();
            (chunkLoss * gradientScale).backward();
        }
        using var leafGradient = leaf.grad!;
        selectedHidden.backward(new[] { leafGradient });
        decoder?.Backward();
        return (lossSum / labelled, labelled);
    }
}
