using System.Text.Json;
using FedLlm.Checkpoints;
using FedLlm.Modeling;
using FedLlm.Peft;

namespace FedLlm.Training;

/// <summary>What trainer_state.json holds besides the tensors.</summary>
public sealed record TrainerState(int Step, long OptimizerSteps, long Seed, IReadOnlyList<double> StepLosses);

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

    public static string Save(string outputDirectory, LlamaForCausalLM model, LoraOptions lora, LocalTrainer trainer, string? baseModel)
    {
        string final = Path.Combine(outputDirectory, Prefix + trainer.Step);
        string staging = Path.Combine(outputDirectory, $".{Prefix}{trainer.Step}.{Environment.ProcessId}.tmp");
        if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        Directory.CreateDirectory(staging);
        AdapterIO.Save(staging, model, lora, baseModel);
        SafeTensorsWriter.Write(Path.Combine(staging, OptimizerFile), trainer.Optimizer.StateTensors().ToList());
        var state = new TrainerState(trainer.Step, trainer.Optimizer.StepCount, trainer.Options.Seed, trainer.StepLosses.ToList());
        Io.AtomicFile.WriteAllText(Path.Combine(staging, StateFile), JsonSerializer.Serialize(state, new JsonSerializerOptions { WriteIndented = true }));
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
        string statePath = Path.Combine(checkpoint, StateFile);
        TrainerState state;
        try
        {
            state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(statePath))
                ?? throw new InvalidDataException($"{statePath}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{statePath}: malformed: {e.Message}", e);
        }
        if (state.Seed != trainer.Options.Seed)
            throw new InvalidDataException($"{statePath}: checkpoint was trained with seed {state.Seed}, this run uses {trainer.Options.Seed}; resuming would not reproduce the run");
        AdapterIO.Load(checkpoint, model);
        using var optimizer = SafeTensorsFile.Open(Path.Combine(checkpoint, OptimizerFile));
        trainer.Optimizer.LoadState(state.OptimizerSteps, name => optimizer.Tensors.ContainsKey(name) ? optimizer.Read(name) : null);
        trainer.RestoreProgress(state.Step, state.StepLosses);
        return state;
    }
}
