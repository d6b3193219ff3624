using FedLlm.Cli.Commands;
using FedLlm.Configuration;
using FedLlm.Peft;
using FedLlm.Runs;
using FedLlm.Training;

namespace FedLlm.Cli.Parsing;

/// <summary><c>fedllm train</c>'s resume safety: --resume needs a checkpoint to continue, and the run folder's
/// fingerprint (<see cref="RunFingerprint"/>) must match this run's; a fresh run records its own.</summary>
public static class ResumeGuard
{
    /// <summary>What determines a local training run (checkpoint cadence and paths left out; data as hashes).</summary>
    public static RunFingerprint TrainingFingerprint(TrainSettings s, string modelDir, string dataPath, string? evalPath,
        TrainingOptions training, LoraOptions lora) =>
        RunFingerprint.Empty
            .With("task", s.Task.Trim().ToLowerInvariant())
            .WithModel("model", modelDir)
            .With("model.base_dtype", s.BaseDtype)
            .WithData("data.train_sha256", dataPath)
            .WithData("data.eval_sha256", evalPath)
            .With("data.eval_limit", s.EvalLimit)
            .With("data.skip_bad", s.SkipBad)
            .WithProperties("training", training, nameof(TrainingOptions.SaveEverySteps))
            .WithProperties("lora", lora);

    /// <summary>Refuses --resume without a checkpoint or with other settings (recording the fingerprint when it matches).
    /// A fresh run records its fingerprint with <see cref="RecordFresh"/> once it starts training, so a run that fails
    /// while loading leaves no folder behind.</summary>
    /// <param name="givenOutput">--output as given (null: a new time-stamped folder, where nothing can be resumed).</param>
    public static void Check(bool resume, string? givenOutput, string output, RunFingerprint fingerprint)
    {
        if (!resume) return;
        if (givenOutput is null) throw new ConfigurationException("--resume needs --output: the folder of the run to continue");
        if (TrainingCheckpoint.Latest(output) is null)
            throw new ConfigurationException($"--resume: nothing to resume in {output}: no checkpoint there",
                ["--save-every N writes checkpoints during training; without --resume the run starts afresh"]);
        fingerprint.CheckAndRecord(output);
    }

    /// <summary>Records a fresh run's fingerprint in <paramref name="output"/> (a resumed run's is already there).</summary>
    public static void RecordFresh(bool resume, string output, RunFingerprint fingerprint)
    {
        if (!resume) fingerprint.Write(output);
    }
}
