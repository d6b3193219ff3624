using FedLlm.Alignment;
using FedLlm.Federation;
using FedLlm.Network.Protocol;
using FedLlm.Peft;
using FedLlm.Runs;
using static TorchSharp.torch;

namespace FedLlm.Network;

/// <summary>
/// The one mapping between the library's options and the wire's messages, in both directions, so that a field added to
/// an options record is either carried or caught by the round-trip test (tests/…/Network/WireMappingTests).
/// </summary>
public static class WireMapping
{
    /// <summary>A client's local-training settings as the join reply carries them.</summary>
    public static TrainingConfig ToWire(ClientTrainingOptions o) => new()
    {
        LocalSteps = o.LocalSteps, BatchSize = o.BatchSize, GradientAccumulationSteps = o.GradientAccumulationSteps, MaxGradNorm = o.MaxGradNorm,
        MaxSequenceLength = o.MaxSequenceLength, KeepOptimizerState = o.KeepClientOptimizerState, Seed = o.Seed,
    };

    /// <summary>The local-training settings of a join reply.</summary>
    public static ClientTrainingOptions FromWire(TrainingConfig t) => new()
    {
        LocalSteps = t.LocalSteps, BatchSize = t.BatchSize, GradientAccumulationSteps = t.GradientAccumulationSteps, MaxGradNorm = t.MaxGradNorm,
        MaxSequenceLength = t.MaxSequenceLength, KeepClientOptimizerState = t.KeepOptimizerState, Seed = t.Seed,
    };

    /// <summary>The adapter layout as the join reply carries it.</summary>
    public static LoraConfig ToWire(LoraOptions o)
    {
        var wire = new LoraConfig { Rank = o.Rank, Alpha = o.Alpha, Dropout = o.Dropout, UseRslora = o.UseRsLora };
        wire.TargetModules.AddRange(o.TargetModules);
        return wire;
    }

    /// <summary>The adapter layout of a join reply.</summary>
    public static LoraOptions FromWire(LoraConfig c) => new()
    {
        Rank = c.Rank, Alpha = c.Alpha, Dropout = c.Dropout, UseRsLora = c.UseRslora, TargetModules = c.TargetModules.ToList(),
    };

    /// <summary>The run's local objective as the join reply carries it.</summary>
    public static ObjectiveConfig ToWire(LocalObjective o) => new()
    {
        Task = o.Task, DpoBeta = o.Dpo.Beta, DpoLabelSmoothing = o.Dpo.LabelSmoothing,
    };

    /// <summary>The local objective of a join reply.</summary>
    public static LocalObjective FromWire(ObjectiveConfig c) => new()
    {
        Task = c.Task, Dpo = new DpoOptions { Beta = c.DpoBeta, LabelSmoothing = c.DpoLabelSmoothing },
    };

    /// <summary>A round's instructions without their tensors (the client fetches each set by name).</summary>
    public static RoundTask ToWire(ClientInstructions i)
    {
        var task = new RoundTask { Round = i.Round, LearningRate = i.LearningRate };
        task.Hooks.AddRange(i.Hooks);
        foreach (var (key, value) in i.Config) task.Config[key] = value;
        task.TensorSets.AddRange(i.TensorSets.Keys.Order(StringComparer.Ordinal));
        task.ReturnedTensorSets.AddRange(i.ReturnedTensorSets);
        return task;
    }

    /// <summary>A round's instructions from the task and the tensor sets fetched for it (the caller owns them).</summary>
    public static ClientInstructions FromWire(RoundTask task, IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> tensorSets) =>
        new(task.Round, task.LearningRate)
        {
            Hooks = task.Hooks.ToList(),
            Config = task.Config.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal),
            TensorSets = tensorSets,
            ReturnedTensorSets = task.ReturnedTensorSets.ToList(),
        };
}
