using FedLlm.Checkpoints;
using FedLlm.Modeling;
using FedLlm.Peft;

namespace FedLlm.Training;

/// <summary>What trainer_state.json holds besides the tensors.</summary>
/// <param name="StepMetrics">Further per-step metrics of the objective (DPO's rewards, margin, accuracy), or null.</param>
public sealed record TrainerState(int Step, long OptimizerSteps, long Seed, IReadOnlyList<double> StepLosses,
    IReadOnlyList<IReadOnlyDictionary<string, double>>? StepMetrics = null);

/// <summary>
/// A resumable training checkpoint: <c>checkpoint-{step}/</c> with the adapter in PEFT format (loadable on its own),
/// the optimizer moments (optimizer.safetensors) and trainer_state.json. The folder is assembled under a temporary
/// name and renamed into place, so a crash never leaves a half-written checkpoint that resume would pick up.
/// </summary>
public static class TrainingCheckpoint
{
    const string OptimizerFile = "optimizer.safetensors";
    const string StateFile = "trainer_state.json";
    const string Prefix = "checkpoint-";

    public static string Save(string outputDirectory, LlamaForCausalLM model, LoraOptions lora, LocalTrainer trainer, string? baseModel) =>
        Save(outputDirectory, model, lora, trainer.Optimizer,
            new TrainerState(trainer.Step, trainer.Optimizer.StepCount, trainer.Options.Seed, trainer.StepLosses.ToList()), baseModel);

    /// <summary>Writes checkpoint-{state.Step}/ for any trainer of the model's adapters (SFT, DPO).</summary>
    public static string Save(string outputDirectory, LlamaForCausalLM model, LoraOptions lora, AdamW optimizer, TrainerState state, string? baseModel)
    {
        string final = Path.Combine(outputDirectory, Prefix + state.Step);
        string staging = Path.Combine(outputDirectory, $".{Prefix}{state.Step}.{Environment.ProcessId}.tmp");
        if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        Directory.CreateDirectory(staging);
        AdapterIO.Save(staging, model, lora, baseModel);
        SafeTensorsWriter.Write(Path.Combine(staging, OptimizerFile), optimizer.StateTensors().ToList());
        Io.AtomicFile.WriteAllText(Path.Combine(staging, StateFile), TrainerStateJson.Write(state));
        if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
        Directory.Move(staging, final);
        return final;
    }

    /// <summary>The checkpoint with the highest step in <paramref name="outputDirectory"/>, or null.</summary>
    public static string? Latest(string outputDirectory)
    {
        if (!Directory.Exists(outputDirectory)) return null;
        return Directory.GetDirectories(outputDirectory, Prefix + "*")
            .Select(d => (Dir: d, Ok: int.TryParse(Path.GetFileName(d)[Prefix.Length..], out int step), Step: step))
            .Where(x => x.Ok && File.Exists(Path.Combine(x.Dir, StateFile)))
            .OrderByDescending(x => x.Step)
            .Select(x => x.Dir)
            .FirstOrDefault();
    }

    /// <summary>Restores adapter weights, optimizer moments and progress from a checkpoint folder.</summary>
    public static TrainerState Restore(string checkpoint, LlamaForCausalLM model, LocalTrainer trainer)
    {
        var state = Restore(checkpoint, model, trainer.Optimizer, trainer.Options.Seed);
        trainer.RestoreProgress(state.Step, state.StepLosses);
        return state;
    }

    /// <summary>Restores adapter weights and optimizer moments; the caller restores its trainer's progress from the returned state.</summary>
    /// <exception cref="InvalidDataException">trainer_state.json is malformed or was written with another seed.</exception>
    public static TrainerState Restore(string checkpoint, LlamaForCausalLM model, AdamW optimizer, long seed)
    {
        string statePath = Path.Combine(checkpoint, StateFile);
        var state = TrainerStateJson.Read(File.ReadAllText(statePath), statePath);
        if (state.Seed != seed)
            throw new InvalidDataException($"{statePath}: checkpoint was trained with seed {state.Seed}, this run uses {seed}; resuming would not reproduce the run");
        AdapterIO.Load(checkpoint, model);
        using var moments = SafeTensorsFile.Open(Path.Combine(checkpoint, OptimizerFile));
        optimizer.LoadState(state.OptimizerSteps, name => moments.Tensors.ContainsKey(name) ? moments.Read(name) : null);
        return state;
    }
}
