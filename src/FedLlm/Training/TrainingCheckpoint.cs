using FedLlm.Checkpoints;
using FedLlm.Io;
using FedLlm.Modeling;
using FedLlm.Peft;

namespace FedLlm.Training;

/// <summary>What trainer_state.json holds besides the tensors.</summary>
/// <param name="StepMetrics">The objective's further per-step metrics (DPO's rewards, margin, accuracy), or null.</param>
/// <param name="Objective">The objective that wrote it ("sft", "dpo"); null in checkpoints from before the trainers were unified.</param>
/// <param name="Step">Steps completed (the checkpoint is checkpoint-{Step}/).</param>
/// <param name="OptimizerSteps">Optimizer steps taken (the t of AdamW's bias correction; fewer than steps when some
/// were skipped).</param>
/// <param name="Seed">The training seed, so a resume draws the same batches and dropout masks.</param>
/// <param name="StepLosses">Each completed step's loss, in order.</param>
public sealed record TrainerState(int Step, long OptimizerSteps, long Seed, IReadOnlyList<double> StepLosses,
    IReadOnlyList<IReadOnlyDictionary<string, double>?>? StepMetrics = null, string? Objective = null);

/// <summary>
/// A resumable training checkpoint, the same for every objective: <c>checkpoint-{step}/</c> with the adapter in PEFT
/// format (loadable on its own), the optimizer moments (optimizer.safetensors, keyed by PEFT adapter keys) and
/// trainer_state.json. The folder is assembled under a temporary name and renamed into place, so a crash never leaves
/// a half-written checkpoint that resume would pick up.
/// </summary>
/// <remarks>DPO's reference log-probabilities are not stored: they are a pure function of the frozen reference and are
/// recomputed on resume.</remarks>
public static class TrainingCheckpoint
{
    const string OptimizerFile = "optimizer.safetensors";
    const string StateFile = "trainer_state.json";
    const string Prefix = "checkpoint-";

    /// <summary>Writes checkpoint-{step}/ for the trainer's current state; removes staging folders of dead writers first.</summary>
    /// <exception cref="NonFiniteTensorException">An adapter or optimizer tensor is not finite; nothing is written.</exception>
    public static string Save<TExample, TMetrics>(string outputDirectory, LlamaForCausalLM model, LoraOptions lora,
        AdapterTrainer<TExample, TMetrics> trainer, string? baseModel)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        var objective = trainer.Objective;
        var state = new TrainerState(trainer.Step, trainer.Optimizer.StepCount, trainer.Options.Seed,
            trainer.StepMetrics.Select(objective.Loss).ToList(), trainer.StepMetrics.Select(objective.ToCheckpointRow).ToList(), objective.Name);
        return Save(outputDirectory, model, lora, trainer.Optimizer, state, baseModel);
    }

    /// <summary>Writes checkpoint-{state.Step}/ from its parts.</summary>
    public static string Save(string outputDirectory, LlamaForCausalLM model, LoraOptions lora, AdamW optimizer, TrainerState state, string? baseModel)
    {
        Directory.CreateDirectory(outputDirectory);
        StagingFolder.RemoveStale(outputDirectory, Prefix);
        string final = Path.Combine(outputDirectory, Prefix + state.Step);
        string staging = StagingFolder.For(outputDirectory, Prefix + state.Step);
        if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        Directory.CreateDirectory(staging);
        try
        {
            AdapterIO.Save(staging, model, lora, baseModel);
            var moments = optimizer.StateTensors().ToList();
            foreach (var (name, tensor) in moments) FiniteTensors.Require(tensor, name, Path.Combine(staging, OptimizerFile), "write");
            SafeTensorsWriter.Write(Path.Combine(staging, OptimizerFile), moments);
            AtomicFile.WriteAllText(Path.Combine(staging, StateFile), TrainerStateJson.Write(state));
        }
        catch
        {
            Directory.Delete(staging, recursive: true);
            throw;
        }
        if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
        Directory.Move(staging, final);
        return final;
    }

    /// <summary>The checkpoint with the highest step in <paramref name="outputDirectory"/>, or null; removes staging folders of dead writers.</summary>
    public static string? Latest(string outputDirectory)
    {
        if (!Directory.Exists(outputDirectory)) return null;
        StagingFolder.RemoveStale(outputDirectory, Prefix);
        return Directory.GetDirectories(outputDirectory, Prefix + "*")
            .Select(d => (Dir: d, Ok: int.TryParse(Path.GetFileName(d)[Prefix.Length..], out int step), Step: step))
            .Where(x => x.Ok && File.Exists(Path.Combine(x.Dir, StateFile)))
            .OrderByDescending(x => x.Step)
            .Select(x => x.Dir)
            .FirstOrDefault();
    }

    /// <summary>Restores adapter weights, optimizer moments and the trainer's progress from a checkpoint folder.</summary>
    /// <exception cref="InvalidDataException">trainer_state.json is malformed, was written with another seed, or by another
    /// objective (an instruction checkpoint resumed as DPO).</exception>
    public static TrainerState Restore<TExample, TMetrics>(string checkpoint, LlamaForCausalLM model, AdapterTrainer<TExample, TMetrics> trainer)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        var objective = trainer.Objective;
        var state = ReadState(checkpoint, trainer.Options.Seed);
        if (state.Objective is { } written && written != objective.Name)
            throw new InvalidDataException($"{checkpoint}: trainer_state.json was written by {written} training; it is not a {objective.Name.ToUpperInvariant()} checkpoint");
        if (state.StepLosses.Count != state.Step)
            throw new InvalidDataException($"{checkpoint}: trainer_state.json has {state.StepLosses.Count} step losses for {state.Step} steps");
        var metrics = state.StepLosses
            .Select((loss, i) => objective.FromCheckpointRow(loss, state.StepMetrics is { } rows && i < rows.Count ? rows[i] : null, checkpoint, i))
            .ToList();
        RestoreTensors(checkpoint, model, trainer.Optimizer, state);
        trainer.RestoreProgress(state.Step, metrics);
        return state;
    }

    static TrainerState ReadState(string checkpoint, long seed)
    {
        string statePath = Path.Combine(checkpoint, StateFile);
        var state = TrainerStateJson.Read(File.ReadAllText(statePath), statePath);
        if (state.Seed != seed)
            throw new InvalidDataException($"{statePath}: checkpoint was trained with seed {state.Seed}, this run uses {seed}; resuming would not reproduce the run");
        return state;
    }

    static void RestoreTensors(string checkpoint, LlamaForCausalLM model, AdamW optimizer, TrainerState state)
    {
        AdapterIO.Load(checkpoint, model);
        string path = Path.Combine(checkpoint, OptimizerFile);
        using var moments = SafeTensorsFile.Open(path);
        optimizer.LoadState(state.OptimizerSteps, name => moments.Tensors.ContainsKey(name) ? moments.Read(name) : null);
    }
}
