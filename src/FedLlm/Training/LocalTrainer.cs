using FedLlm.Data;
using FedLlm.Modeling;

namespace FedLlm.Training;

/// <summary>Supervised fine-tuning of a model's LoRA adapters on tokenized instruction examples: an
/// <see cref="AdapterTrainer{TExample, TMetrics}"/> with the <see cref="SftObjective"/>.</summary>
public sealed class LocalTrainer(LlamaForCausalLM model, TrainingOptions options, int padTokenId)
    : AdapterTrainer<SftExample, SftStepMetrics>(model, options, new SftObjective(padTokenId, options.LossChunkTokens));
