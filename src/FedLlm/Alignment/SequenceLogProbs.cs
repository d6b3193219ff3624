using TorchSharp;
using FedLlm.Training;
using FedLlm.Runtime;
using FedLlm.Modeling;
using static TorchSharp.torch;

namespace FedLlm.Alignment;

/// <summary>
/// Per-sequence log-probabilities log π(y | x) = Σ_t log π(y_t | x, y_&lt;t) over the labelled (response) tokens,
/// without materialising the logits of the whole batch.
/// </summary>
/// <remarks>
/// As in <see cref="Training.CausalLmStep"/>, only labelled rows go through the vocabulary projection, a chunk at a time.
/// The DPO loss is not a sum over tokens, so the backward pass cannot be folded into the chunk loop the way the SFT loss
/// is. Instead <see cref="ForwardBackward"/> makes two passes over the head: the first, without a graph, gives every
/// sequence's log-probability; the objective's gradient w.r.t. those sums (one number per sequence) then weights each
/// token's log-probability in a second, differentiable pass whose chunk graphs are freed one by one. The head runs
/// twice, which costs one H×V matmul per labelled token, against holding every chunk's logits for the backward pass.
/// </remarks>
public static class SequenceLogProbs
{
    /// <summary>Sequence log-probabilities without gradients (reference pass, evaluation).</summary>
    /// <param name="inputIds">(R, T) int64, right-padded.</param>
    /// <param name="labels">(R, T) int64, −100 where no log-probability is taken.</param>
    /// <returns>One sum per row (0 for a row without labels).</returns>
    /// <param name="model">The model to score with (no gradients are taken).</param>
    /// <param name="chunkTokens">Labelled rows projected onto the vocabulary at once, 0 = automatic (<see cref="LossChunk"/>).</param>
    public static double[] Compute(LlamaForCausalLM model, Tensor inputIds, Tensor labels, int chunkTokens)
    {
        chunkTokens = LossChunk.Rows(chunkTokens, model);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var hidden = model.HiddenStates(inputIds);                                   // (R, T, H)
        var tokens = LabelledTokens(hidden, labels);
        var sums = Sums(model, tokens.Hidden, tokens, chunkTokens);
        return sums.data<double>().ToArray();
    }

    /// <summary>
    /// Computes the sequence log-probabilities, evaluates <paramref name="objective"/> on them, and accumulates the
    /// objective's gradients into the model's trainable parameters.
    /// </summary>
    /// <param name="objective">Maps the (R) float64 log-probabilities to a scalar; it must be differentiable in them.</param>
    /// <returns>The log-probabilities and the objective's value.</returns>
    /// <param name="model">The model with LoRA injected, in train mode.</param>
    /// <param name="inputIds">(R, T) int64, right-padded.</param>
    /// <param name="labels">(R, T) int64, −100 where no log-probability is taken.</param>
    /// <param name="chunkTokens">Labelled rows projected onto the vocabulary at once, 0 = automatic (<see cref="LossChunk"/>).</param>
    public static (double[] LogProbs, double Objective) ForwardBackward(
        LlamaForCausalLM model, Tensor inputIds, Tensor labels, Func<Tensor, Tensor> objective, int chunkTokens)
    {
        ArgumentNullException.ThrowIfNull(objective);
        chunkTokens = LossChunk.Rows(chunkTokens, model);
        using var scope = NewDisposeScope();
        var (hidden, decoder) = Training.CheckpointedDecoder.HiddenStates(model, inputIds, attentionMask: null); // (R, T, H), in the graph
        using var _decoder = decoder;
        var tokens = LabelledTokens(hidden, labels);
        var leaf = tokens.Hidden.detach().requires_grad_(true);                      // (N, H), graph stops here

        // Pass 1: the sums, no graph.
        Tensor sums;
        using (no_grad()) sums = Sums(model, leaf, tokens, chunkTokens);             // (R) float64
        var sumsLeaf = sums.detach().requires_grad_(true);
        var value = objective(sumsLeaf);
        value.backward();
        var perSequence = sumsLeaf.grad;                                             // (R) ∂objective/∂log π(y|x)
        var logProbs = sums.data<double>().ToArray();
        double objectiveValue = value.ToScalarDouble();
        if (perSequence is null || tokens.Count == 0) return (logProbs, objectiveValue);

        // Pass 2: Σ_tokens g[row] · log p(token) has the same gradient as the objective, chunk by chunk.
        for (long start = 0; start < tokens.Count; start += chunkTokens)
        {
            using var chunkScope = NewDisposeScope();
            long length = Math.Min(chunkTokens, tokens.Count - start);
            var tokenLogProbs = TokenLogProbs(model, leaf.narrow(0, start, length), tokens.Targets.narrow(0, start, length)); // (n)
            var weights = perSequence.index_select(0, tokens.Rows.narrow(0, start, length)).to(tokenLogProbs.dtype);         // (n)
            (tokenLogProbs * weights).sum().backward();
        }
        tokens.Hidden.backward(new[] { leaf.grad! });
        decoder?.Backward(); // with activation checkpointing: recompute and back-propagate the layers one at a time
        return (logProbs, objectiveValue);
    }

    /// <summary>The labelled positions: hidden state of the predicting position, its target, and its sequence.</summary>
    sealed record Labelled(Tensor Hidden, Tensor Targets, Tensor Rows, long Count, long Sequences);

    static Labelled LabelledTokens(Tensor hidden, Tensor labels)
    {
        long R = hidden.shape[0], T = hidden.shape[1];
        var shiftedHidden = hidden.narrow(1, 0, T - 1).reshape(-1, hidden.shape[2]); // (R*(T-1), H): position t predicts t+1
        var shiftedLabels = labels.narrow(1, 1, T - 1).reshape(-1);                  // (R*(T-1))
        using var ignored = ((long)PreferenceCollator.IgnoreIndex).ToScalar();   // named (Runtime.Scalars)
        using var rowLength = (T - 1).ToScalar();
        var positions = shiftedLabels.ne(ignored).nonzero().squeeze(-1);            // (N)
        return new Labelled(
            shiftedHidden.index_select(0, positions),                                // (N, H)
            shiftedLabels.index_select(0, positions),                                // (N)
            positions.div(rowLength, rounding_mode: RoundingMode.floor),             // (N) row of each token
            positions.shape[0], R);
    }

    static Tensor Sums(LlamaForCausalLM model, Tensor hidden, Labelled tokens, int chunkTokens)
    {
        var sums = zeros(tokens.Sequences, ScalarType.Float64, hidden.device);       // (R)
        for (long start = 0; start < tokens.Count; start += chunkTokens)
        {
            using var chunkScope = NewDisposeScope();
            long length = Math.Min(chunkTokens, tokens.Count - start);
            var tokenLogProbs = TokenLogProbs(model, hidden.narrow(0, start, length), tokens.Targets.narrow(0, start, length));
            // Summed in float64: a margin is a small difference of two sums over hundreds of tokens.
            sums.index_add_(0, tokens.Rows.narrow(0, start, length), tokenLogProbs.to(ScalarType.Float64), 1.0);
        }
        return sums;
    }

    /// <summary>log softmax(head(h))[target] for each row, with softmax statistics in at least fp32 as transformers computes them.</summary>
    static Tensor TokenLogProbs(LlamaForCausalLM model, Tensor hidden, Tensor targets)
    {
        var logits = model.Head(hidden);                                             // (n, V)
        var wide = logits.dtype == ScalarType.Float64 ? logits : logits.to(ScalarType.Float32);
        return wide.log_softmax(-1).gather(1, targets.unsqueeze(1)).squeeze(1);      // (n)
    }
}
