using FedLlm.Modeling;

namespace FedLlm.Alignment;

/// <summary>
/// Held-out DPO scores of whatever adapter is loaded in the model, as a federation's per-round evaluation: loss = the
/// held-out DPO loss, score = reward accuracy, and the margin and rewards as named metrics (TRL's keys with an "eval_"
/// prefix, as TRL logs them). One reference cache for all rounds, so π_ref runs once per held-out pair.
/// </summary>
public sealed class PreferenceHeldOut(LlamaForCausalLM model, IReadOnlyList<PreferencePair> pairs, DpoOptions dpo, int padTokenId,
    ReferencePolicy? reference = null, int batchSize = 8, int chunkTokens = 0) : IDisposable
{
    private readonly ReferenceLogProbCache cache = new(reference, ownsPolicy: false);

    /// <summary>DPO loss, rewards, margin and accuracy of the model's current adapter on the held-out pairs.</summary>
    public DpoMetrics Metrics() => PreferenceEvaluation.Evaluate(model, pairs, cache, dpo, padTokenId, batchSize, chunkTokens);

    /// <summary>The metrics under TRL's evaluation names (eval_loss, eval_rewards/chosen …).</summary>
    public static IReadOnlyDictionary<string, double> ToEvalMetrics(DpoMetrics m) =>
        m.ToTrlLog().ToDictionary(kv => "eval_" + kv.Key, kv => kv.Value);

    /// <summary>Frees the cached reference values.</summary>
    public void Dispose() => cache.Dispose();
}
