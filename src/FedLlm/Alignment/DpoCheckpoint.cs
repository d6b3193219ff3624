using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Training;

namespace FedLlm.Alignment;

/// <summary>
/// Resumable DPO checkpoints in the same checkpoint-{step}/ layout as instruction tuning (<see cref="TrainingCheckpoint"/>):
/// PEFT adapter, optimizer moments, and trainer_state.json with each step's DPO metrics. Reference log-probabilities are
/// not stored: they are a pure function of the frozen reference and are recomputed on resume.
/// </summary>
public static class DpoCheckpoint
{
    const string PairsKey = "pairs";

    public static string Save(string outputDirectory, LlamaForCausalLM model, LoraOptions lora, DpoTrainer trainer, string? baseModel)
    {
        var metrics = trainer.StepMetrics.Select(m =>
        {
            var row = new Dictionary<string, double>(m.ToTrlLog()) { [PairsKey] = m.Pairs };
            return (IReadOnlyDictionary<string, double>)row;
        }).ToList();
        var state = new TrainerState(trainer.Step, trainer.Optimizer.StepCount, trainer.Options.Seed, trainer.StepMetrics.Select(m => m.Loss).ToList(), metrics);
        return TrainingCheckpoint.Save(outputDirectory, model, lora, trainer.Optimizer, state, baseModel);
    }

    /// <exception cref="InvalidDataException">The checkpoint is not a DPO checkpoint, is malformed, or used another seed.</exception>
    public static TrainerState Restore(string checkpoint, LlamaForCausalLM model, DpoTrainer trainer)
    {
        var state = TrainingCheckpoint.Restore(checkpoint, model, trainer.Optimizer, trainer.Options.Seed);
        if (state.StepMetrics is not { } rows || rows.Count != state.Step)
            throw new InvalidDataException($"{checkpoint}: trainer_state.json has no per-step DPO metrics for its {state.Step} steps; it is not a DPO checkpoint");
        trainer.RestoreProgress(state.Step, rows.Select((row, i) => FromRow(row, checkpoint, i)));
        return state;
    }

    static DpoMetrics FromRow(IReadOnlyDictionary<string, double> row, string checkpoint, int step)
    {
        double Get(string key) => row.TryGetValue(key, out double v) ? v
            : throw new InvalidDataException($"{checkpoint}: trainer_state.json step {step + 1} lacks '{key}'");
        return new DpoMetrics((int)Get(PairsKey), Get("loss"), Get("rewards/chosen"), Get("rewards/rejected"), Get("rewards/accuracies"),
            Get("logps/chosen"), Get("logps/rejected"));
    }
}
