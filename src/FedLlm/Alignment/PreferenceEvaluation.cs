using FedLlm.Modeling;
using static TorchSharp.torch;

namespace FedLlm.Alignment;

/// <summary>
/// DPO metrics of the current policy on held-out pairs: loss, implicit rewards, reward margin and reward accuracy, the
/// numbers that show alignment progress (a rising margin and accuracy mean probability moved from rejected to chosen
/// relative to the reference).
/// </summary>
public static class PreferenceEvaluation
{
    /// <summary>Evaluates the policy on every pair (eval mode, no gradients; the train/eval mode is restored afterwards).</summary>
    /// <param name="reference">Reference values for this pair list; keep one cache per held-out set so π_ref runs once.</param>
    /// <exception cref="ArgumentException">There are no pairs.</exception>
    /// <param name="model">The policy (the model with its current adapter).</param>
    /// <param name="pairs">The held-out preference pairs.</param>
    /// <param name="dpo">β and label smoothing.</param>
    /// <param name="padTokenId">The tokenizer's padding id, for batching.</param>
    /// <param name="batchSize">Pairs per forward pass.</param>
    /// <param name="chunkTokens">Labelled rows projected onto the vocabulary at once.</param>
    public static DpoMetrics Evaluate(LlamaForCausalLM model, IReadOnlyList<PreferencePair> pairs, ReferenceLogProbCache reference,
        DpoOptions dpo, int padTokenId, int batchSize = 8, int chunkTokens = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(dpo);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        if (pairs.Count == 0) throw new ArgumentException("no held-out pairs", nameof(pairs));
        dpo.Validate();
        var collator = new PreferenceCollator(padTokenId);
        var all = Enumerable.Range(0, pairs.Count).ToList();
        var (referenceChosen, referenceRejected) = reference.Get(model, pairs, all, collator, batchSize, chunkTokens);
        var policyChosen = new double[pairs.Count];
        var policyRejected = new double[pairs.Count];
        bool wasTraining = model.training;
        model.eval();
        try
        {
            foreach (var chunk in all.Chunk(batchSize))
            {
                using var scope = NewDisposeScope();
                var batch = collator.Collate(chunk.Select(i => pairs[i]).ToList());
                var logProbs = SequenceLogProbs.Compute(model, tensor(batch.InputIds, batch.Shape), tensor(batch.Labels, batch.Shape), chunkTokens);
                for (int k = 0; k < chunk.Length; k++)
                {
                    policyChosen[chunk[k]] = logProbs[k];
                    policyRejected[chunk[k]] = logProbs[chunk.Length + k];
                }
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return DpoLoss.Metrics(policyChosen, policyRejected, referenceChosen, referenceRejected, dpo.Beta, dpo.LabelSmoothing);
    }
}
