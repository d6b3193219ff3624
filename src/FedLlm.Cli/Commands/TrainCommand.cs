using System.ComponentModel;
using FedLlm.Cli.Parsing;
using FedLlm.Configuration;
using FedLlm.Data;
using FedLlm.Defaults;
using FedLlm.Evaluation;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Runtime;
using FedLlm.Tokenization;
using FedLlm.Tracking;
using FedLlm.Training;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace FedLlm.Cli.Commands;

public sealed class TrainSettings : CommonSettings
{
    [CommandOption("--task <TASK>")]
    [OneOf("sft", "dpo")]
    [Description("sft (instruction tuning) or dpo (Direct Preference Optimization on preference pairs).")]
    [DefaultValue("sft")]
    public string Task { get; init; } = "sft";

    [CommandOption("--data <FILE>")]
    [Description("Training data: Alpaca schema (instruction, input, output) for sft; preference pairs (see --dataset) for dpo. JSON, JSONL or Parquet. Default: the embedded data set.")]
    public string? Data { get; init; }

    [CommandOption("--dataset <KIND>")]
    [OneOf("generic-preference", "ultrafeedback", "hh-rlhf")]
    [Description("dpo only: the schema of --data and --eval-data: ultrafeedback, hh-rlhf or generic-preference ({prompt, chosen, rejected}).")]
    [DefaultValue("generic-preference")]
    public string Dataset { get; init; } = "generic-preference";

    [CommandOption("--beta <X>")]
    [Check(ValueRule.Positive)]
    [Description("dpo only: β, the inverse temperature of the implicit reward.")]
    [DefaultValue(0.1)]
    public double Beta { get; init; } = 0.1;

    [CommandOption("--reference-adapter <DIR>")]
    [Description("dpo only: a frozen PEFT adapter (e.g. from SFT) that is the reference policy and the starting point. Default: the base model with adapters off.")]
    public string? ReferenceAdapter { get; init; }

    [CommandOption("--eval-data <FILE>")]
    [Description("Held-out data (same schema), scored before and after training: loss and exact match. Default: the embedded held-out set with the embedded data, else none.")]
    public string? EvalData { get; init; }

    [CommandOption("--eval-limit <N>")]
    [Check(ValueRule.Positive)]
    [Description("Score only the first N held-out examples. Default: all.")]
    public int? EvalLimit { get; init; }

    [CommandOption("--output <DIR>")]
    [Description("Where adapters, checkpoints and the run fingerprint go. Default: runs/train-<time>.")]
    public string? Output { get; init; }

    [CommandOption("--resume")]
    [Description("Continue from the latest checkpoint in --output; refused when there is none or the folder was started with other settings.")]
    public bool Resume { get; init; }

    [CommandOption("--steps <N>")][Check(ValueRule.Positive)][Description("Optimizer steps. Default: 100; embedded default: 500 (sft), 250 (dpo).")] public int? Steps { get; init; }
    [CommandOption("--batch-size <N>")][Check(ValueRule.Positive)][Description("Examples per step. Default: 16 (sft), 8 (dpo).")] public int? BatchSize { get; init; }
    [CommandOption("--gradient-accumulation|--grad-accum <N>")][Check(ValueRule.Positive)][Description("Micro-batches accumulated per step. Default: 1.")] public int? GradientAccumulation { get; init; }
    [CommandOption("--learning-rate|--lr <RATE>")][Check(ValueRule.Positive)][Description("Peak learning rate. Default: 5e-5 (sft), 5e-4 (dpo); embedded default: 0.001.")] public double? LearningRate { get; init; }

    [CommandOption("--schedule <KIND>")]
    [OneOf("constant", "cosine", "linear")]
    [Description("Learning-rate schedule after --warmup-steps of linear warm-up: constant, cosine or linear. Default: constant; embedded default: cosine.")]
    public string? Schedule { get; init; }

    [CommandOption("--warmup-steps|--warmup <N>")][Check(ValueRule.NonNegative)][Description("Linear warm-up steps. Default: 0; embedded default: 10.")] public int? Warmup { get; init; }
    [CommandOption("--max-grad-norm <X>")][Check(ValueRule.NonNegative)][Description("Gradient clipping norm (0 = none). Default: 1.")] public double? MaxGradNorm { get; init; }
    [CommandOption("--max-length <N>")][Check(ValueRule.Positive)][Description("Examples are truncated to N tokens. Default: 512 (sft), the DPO pair builder's for dpo.")] public int? MaxLength { get; init; }
    [CommandOption("--save-every <N>")][Check(ValueRule.NonNegative)][Description("Write a checkpoint every N steps (0 = only at the end), for --resume. Default: 0.")] public int? SaveEvery { get; init; }
    [CommandOption("--lora-r <N>")][Check(ValueRule.Positive)][Description("LoRA rank. Default: 8; embedded default: 16.")] public int? LoraRank { get; init; }
    [CommandOption("--lora-alpha <X>")][Check(ValueRule.Positive)][Description("LoRA α (the update is scaled by α / r). Default: 16; embedded default: 32.")] public double? LoraAlpha { get; init; }
    [CommandOption("--lora-dropout <X>")][Check(ValueRule.Fraction)][Description("Dropout on the LoRA input, in [0, 1). Default: 0.05; embedded default: 0.")] public double? LoraDropout { get; init; }

    [CommandOption("--lora-target-modules|--lora-targets <LIST>")]
    [ListValue]
    [OneOf("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")]
    [Description("Comma-separated projections that get adapters, e.g. q_proj,v_proj. Default: all seven.")]
    public string? LoraTargets { get; init; }

    [CommandOption("--template <NAME>")]
    [OneOf("alpaca", "vicuna", "chatml", "llama-3", Aliases = ["llama3", "llama_3"])]
    [Description("Prompt template of instruction data: alpaca, vicuna, chatml or llama-3.")]
    [DefaultValue("alpaca")]
    public string Template { get; init; } = "alpaca";

    [CommandOption("--on-nonfinite <MODE>")]
    [Description("When a step's loss or gradient norm is NaN or infinite: stop (keep the last good checkpoint, exit non-zero) or skip the step.")]
    [DefaultValue("stop")]
    public string OnNonFinite { get; init; } = "stop";

    [CommandOption("--skip-bad")]
    [Description("Skip malformed records (counted in the report) instead of stopping.")]
    public bool SkipBad { get; init; }

    [CommandOption("--report-to <LIST>")]
    [Description("Where per-step metrics also go: tensorboard (event files under OUTPUT/runs), csv (OUTPUT/metrics.csv), both comma-separated, or none.")]
    [DefaultValue("none")]
    public string ReportTo { get; init; } = "none";
}

/// <summary><c>fedllm train</c>: local LoRA fine-tuning with a progress bar, checkpoints, resume and a before/after score.</summary>
public sealed class TrainCommand : Command<TrainSettings>
{
    public override int Execute(CommandContext context, TrainSettings s, CancellationToken cancellationToken)
    {
        return s.Task.Trim().ToLowerInvariant() switch
        {
            "sft" => ExecuteSft(s, cancellationToken),
            "dpo" => DpoTraining.Execute(s, cancellationToken),
            _ => throw new ConfigurationException($"--task: '{s.Task}' is not one of sft, dpo"),
        };
    }

    int ExecuteSft(TrainSettings s, CancellationToken cancellationToken)
    {
        int threads = TorchRuntime.ConfigureThreads(s.Threads);
        var device = TorchRuntime.ParseDevice(s.Device);
        bool embedded = s.Model is null && s.Data is null;
        var defaults = embedded ? EmbeddedDefault.Ensure(message => AnsiConsole.MarkupLineInterpolated($"[grey]{message}[/]")) : null;
        string modelDir = s.Model ?? defaults?.ModelDirectory ?? EmbeddedDefault.Ensure().ModelDirectory;
        string dataPath = s.Data ?? defaults?.TrainPath ?? throw new ConfigurationException("--data is required with --model (the embedded data belongs to the embedded model)");
        string? evalPath = s.EvalData ?? defaults?.EvalPath;
        var recipe = embedded ? EmbeddedDefault.Recipe : null;

        var training = new TrainingOptions
        {
            MaxSteps = s.Steps ?? recipe?.Training.MaxSteps ?? 100,
            BatchSize = s.BatchSize ?? recipe?.Training.BatchSize ?? 16,
            GradientAccumulationSteps = s.GradientAccumulation ?? 1,
            LearningRate = s.LearningRate ?? recipe?.Training.LearningRate ?? 5e-5,
            Schedule = ParseSchedule(s.Schedule) ?? recipe?.Training.Schedule ?? LearningRateScheduleKind.Constant,
            WarmupSteps = s.Warmup ?? recipe?.Training.WarmupSteps ?? 0,
            MaxGradNorm = s.MaxGradNorm ?? 1.0,
            MaxSequenceLength = s.MaxLength ?? 512,
            SaveEverySteps = s.SaveEvery ?? 0,
            Seed = s.Seed,
            OnNonFinite = ParseNonFinite(s.OnNonFinite),
        };
        var lora = new LoraOptions
        {
            Rank = s.LoraRank ?? recipe?.Lora.Rank ?? 8,
            Alpha = s.LoraAlpha ?? recipe?.Lora.Alpha ?? 16,
            Dropout = s.LoraDropout ?? recipe?.Lora.Dropout ?? 0.05,
            TargetModules = s.LoraTargets?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? LoraOptions.AllLlamaProjections,
        };
        training.Validate();
        lora.Validate();
        var template = PromptTemplate.FromName(s.Template);
        string output = s.Output ?? Path.Combine("runs", $"train-{DateTime.Now:yyyyMMdd-HHmmss}");
        var fingerprint = ResumeGuard.TrainingFingerprint(s, modelDir, dataPath, evalPath, training, lora)
            .With("template", template.Name);
        ResumeGuard.Check(s.Resume, s.Output, output, fingerprint);

        var tokenizer = TokenizerLoader.Load(modelDir);
        using var model = s.LoadModel(modelDir, device);
        var read = AlpacaReader.ReadAll(dataPath, new AlpacaReadOptions { SkipBad = s.SkipBad });
        var builder = new SftExampleBuilder(tokenizer, template, training.MaxSequenceLength);
        var examples = read.Examples.Select(builder.Build).ToList();
        var heldOut = evalPath is null ? null : AlpacaReader.ReadAll(evalPath, new AlpacaReadOptions { SkipBad = s.SkipBad }).Examples
            .Take(s.EvalLimit ?? int.MaxValue).ToList();

        AnsiConsole.MarkupLineInterpolated($"[bold]FedLlm train[/]  model [cyan]{modelDir}[/] ({model.Config.Family}, {model.Config.NumHiddenLayers} layers, hidden {model.Config.HiddenSize}, vocab {model.Config.VocabSize}), base {s.BaseDtype}{(s.ActivationCheckpointing ? ", activation checkpointing" : "")}");
        AnsiConsole.MarkupLineInterpolated($"data [cyan]{dataPath}[/]: {examples.Count} examples ({read.Report}); {examples.Count(e => e.Truncated)} truncated to {training.MaxSequenceLength} tokens");
        AnsiConsole.MarkupLineInterpolated($"LoRA r={lora.Rank} alpha={lora.Alpha} dropout={lora.Dropout} on {string.Join(",", lora.TargetModules)}; {training.MaxSteps} steps × batch {training.BatchSize} × accumulation {training.GradientAccumulationSteps}, lr {training.LearningRate} {training.Schedule}; {threads} threads on {device}");

        LoraInjector.Inject(model, lora, new Generator((ulong)training.Seed));
        using var trainer = new LocalTrainer(model, training, tokenizer.PadTokenId ?? 0);
        if (s.Resume && TrainingCheckpoint.Latest(output) is { } checkpoint)
        {
            var state = TrainingCheckpoint.Restore(checkpoint, model, trainer);
            AnsiConsole.MarkupLineInterpolated($"resumed from [cyan]{checkpoint}[/] at step {state.Step}");
        }

        var evaluation = heldOut is null ? null : new HeldOutEvaluation(model, tokenizer, template, training.MaxSequenceLength);
        HeldOutScores? before = null;
        if (evaluation is not null && trainer.Step == 0)
        {
            before = evaluation.Evaluate(heldOut!);
            AnsiConsole.MarkupLineInterpolated($"held-out before training: loss {before.Loss:F4}, exact match {before.ExactMatch:P1} ({before.Examples} examples)");
        }

        ResumeGuard.RecordFresh(s.Resume, output, fingerprint);
        using var tracker = MetricsTrackers.Open(s.ReportTo, output);
        if (before is not null)
            tracker.Log(0, new Dictionary<string, double> { ["eval/loss"] = before.Loss, ["eval/exact_match"] = before.ExactMatch });
        ProgressDisplay.Create()
            .Start(ctx =>
            {
                var task = ctx.AddTask("training", maxValue: training.MaxSteps);
                task.Value = trainer.Step;
                trainer.Train(examples, new SynchronousProgress<TrainingProgress<SftStepMetrics>>(p =>
                {
                    tracker.Log(p.Step, new Dictionary<string, double>
                    {
                        ["train/loss"] = p.Loss, ["train/learning_rate"] = p.LearningRate, ["train/grad_norm"] = p.GradNorm, ["train/tokens_per_second"] = p.TokensPerSecond,
                    });
                    task.Value = p.Step;
                    task.Description = $"step {p.Step}/{p.TotalSteps} loss {p.Loss:F4} lr {p.LearningRate:G3} {p.TokensPerSecond:F0} tok/s";
                }), t => TrainingCheckpoint.Save(output, model, lora, t, ModelName.Of(modelDir)), cancellationToken);
            });

        if (trainer.SkippedSteps.Count > 0)
            AnsiConsole.MarkupLineInterpolated($"[yellow]skipped {trainer.SkippedSteps.Count} step(s) with a non-finite loss or gradient: {string.Join(", ", trainer.SkippedSteps)}[/]");
        string adapterDir = Path.Combine(output, "adapter");
        AdapterIO.Save(adapterDir, model, lora, ModelName.Of(modelDir));
        // Hugging Face's Trainer.save_state() writes the same file beside the checkpoints.
        Io.AtomicFile.WriteAllText(Path.Combine(output, "trainer_state.json"),
            TrainerStateJson.Write(new TrainerState(trainer.Step, trainer.Optimizer.StepCount, training.Seed, trainer.StepLosses.ToList())));
        var losses = trainer.StepLosses;
        int window = Math.Max(1, Math.Min(10, losses.Count / 5));
        var table = new Table().AddColumns("", "start", "end");
        table.AddRow("training loss (mean of " + window + " steps)", $"{losses.Take(window).Average():F4}", $"{losses.TakeLast(window).Average():F4}");
        if (evaluation is not null)
        {
            var after = evaluation.Evaluate(heldOut!);
            tracker.Log(trainer.Step, new Dictionary<string, double> { ["eval/loss"] = after.Loss, ["eval/exact_match"] = after.ExactMatch });
            table.AddRow("held-out loss", before is null ? "-" : $"{before.Loss:F4}", $"{after.Loss:F4}");
            table.AddRow("held-out exact match", before is null ? "-" : $"{before.ExactMatch:P1}", $"{after.ExactMatch:P1}");
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLineInterpolated($"adapter saved to [cyan]{adapterDir}[/] (PEFT format); peak RSS {TorchRuntime.PeakResidentBytes() / (1024.0 * 1024):F0} MiB");
        return 0;
    }

    internal static NonFiniteAction ParseNonFinite(string name) => name.ToLowerInvariant() switch
    {
        "stop" => NonFiniteAction.Stop,
        "skip" => NonFiniteAction.Skip,
        _ => throw new ArgumentException($"--on-nonfinite '{name}' is not one of stop, skip"),
    };

    internal static LearningRateScheduleKind? ParseSchedule(string? name) => name?.ToLowerInvariant() switch
    {
        null => null,
        "constant" => LearningRateScheduleKind.Constant,
        "cosine" => LearningRateScheduleKind.Cosine,
        "linear" => LearningRateScheduleKind.Linear,
        _ => throw new ConfigurationException($"--schedule: '{name}' is not one of constant, cosine, linear"),
    };
}

/// <summary>Progress&lt;T&gt; posts to the thread pool; the progress bar wants the update now, on this thread.</summary>
internal sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
