using FedLlm.Modeling;
using FedLlm.Training;

namespace FedLlm.Alignment;

/// <summary>DPO of a model's LoRA adapters on tokenized preference pairs: an <see cref="AdapterTrainer{TExample, TMetrics}"/>
/// with the <see cref="DpoObjective"/>, so it shares the instruction trainer's loop, data order, hooks and checkpoints.</summary>
/// <param name="reference">See <see cref="DpoObjective(TrainingOptions, DpoOptions, int, ReferenceLogProbCache?)"/>.</param>
/// <exception cref="InvalidOperationException">The model has no adapters.</exception>
/// <param name="model">The model with LoRA injected; its adapters are the policy trained.</param>
/// <param name="options">The local training options.</param>
/// <param name="dpo">β and label smoothing.</param>
/// <param name="padTokenId">The tokenizer's padding id, for batching.</param>
public sealed class DpoTrainer(LlamaForCausalLM model, TrainingOptions options, DpoOptions dpo, int padTokenId, ReferenceLogProbCache? reference = null)
    : AdapterTrainer<PreferencePair, DpoMetrics>(model, options, new DpoObjective(options, dpo, padTokenId, reference))
{
    /// <summary>The DPO knobs.</summary>
    public DpoOptions Dpo => ((DpoObjective)Objective).Dpo;

    /// <summary>The reference log-probabilities this trainer reads and fills.</summary>
    public ReferenceLogProbCache Reference => ((DpoObjective)Objective).Reference;
}
