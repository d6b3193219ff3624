using FedLlm.Modeling;

namespace FedLlm.Training;

/// <summary>
/// The local objective an <see cref="AdapterTrainer{TExample, TMetrics}"/> minimises: how one micro-batch of examples
/// becomes a loss whose gradients accumulate into the adapters, and what a step reports. Instruction tuning
/// (<see cref="SftObjective"/>) and DPO (Alignment.DpoObjective) are the two.
/// </summary>
/// <remarks>The trainer owns everything else: data order, dropout seeding, zeroing, clipping, the optimizer, hooks,
/// the non-finite guard and checkpoints. An objective may hold state (DPO's reference cache) but never the adapters.</remarks>
public interface ITrainingObjective<TExample, TMetrics> : IDisposable
{
    /// <summary>The name written into checkpoints ("sft", "dpo"), so one objective's checkpoint is not resumed by another.</summary>
    string Name { get; }

    /// <summary>Runs once before the first step of <see cref="AdapterTrainer{TExample, TMetrics}.Train"/>, before train mode is set.</summary>
    void BeforeTraining(LlamaForCausalLM model, IReadOnlyList<TExample> examples);

    /// <summary>
    /// Runs at the start of each step, before dropout is seeded, with the example indices of every micro-batch:
    /// work here (DPO's reference pass) must not draw from the step's dropout generator.
    /// </summary>
    void BeforeStep(LlamaForCausalLM model, IReadOnlyList<TExample> examples, IReadOnlyList<int[]> microBatches);

    /// <summary>
    /// The factor each micro-batch's loss is multiplied by before backward, chosen so that the step's gradient is that
    /// of the step's mean loss however the examples were split into micro-batches.
    /// </summary>
    IReadOnlyList<double> LossWeights(IReadOnlyList<TExample> examples, IReadOnlyList<int[]> microBatches);

    /// <summary>Forward and backward of one micro-batch with its loss × <paramref name="lossWeight"/>; its metrics and real
    /// tokens, or null when the micro-batch has nothing to learn from (no labelled token).</summary>
    (TMetrics Metrics, long Tokens)? MicroBatch(LlamaForCausalLM model, IReadOnlyList<TExample> examples, int[] indices, double lossWeight);

    /// <summary>Weighted means over micro-batches (a step) or steps (a round); empty when no micro-batch of a step had
    /// anything to learn from.</summary>
    TMetrics Aggregate(IReadOnlyList<TMetrics> parts);

    /// <summary>The scalar loss of a step's metrics (progress, checkpoints, the non-finite guard).</summary>
    double Loss(TMetrics metrics);

    /// <summary>What a step's metrics add to trainer_state.json besides the loss, or null.</summary>
    IReadOnlyDictionary<string, double>? ToCheckpointRow(TMetrics metrics);

    /// <summary>Rebuilds a step's metrics from trainer_state.json.</summary>
    /// <exception cref="InvalidDataException">The row lacks what this objective needs.</exception>
    TMetrics FromCheckpointRow(double loss, IReadOnlyDictionary<string, double>? row, string checkpoint, int step);
}
