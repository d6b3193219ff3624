using System.ComponentModel;
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
    [Description("sft (instruction tuning) or dpo (Direct Preference Optimization on preference pairs).")]
    [DefaultValue("sft")]
    public string Task { get; init; } = "sft";

    [CommandOption("--data <FILE>")]
    [Description("Training data: Alpaca schema (instruction, input, output) for sft; preference pairs (see --dataset) for dpo. JSON or JSONL. Default: the embedded data set.")]
    public string? Data { get; init; }

    [CommandOption("--dataset <KIND>")]
    [Description("dpo only: the schema of --data and --eval-data: ultrafeedback, hh-rlhf or generic-preference ({prompt, chosen, rejected}).")]
    [DefaultValue("generic-preference")]
    public string Dataset { get; init; } = "generic-preference";

    [CommandOption("--beta <X>")]
    [Description("dpo only: β, the inverse temperature of the implicit reward.")]
    [DefaultValue(0.1)]
    public double Beta { get; init; } = 0.1;

    [CommandOption("--reference-adapter <DIR>")]
    [Description("--task dpo: a frozen PEFT adapter (e.g. from SFT) that is the reference policy and the starting point. Default: the base model with adapters off.")]
    public string? ReferenceAdapter { get; init; }

    [CommandOption("--eval-data <FILE>")]
    [Description("Held-out data (same schema), scored before and after training: loss and exact match.")]
    public string? EvalData { get; init; }

    [CommandOption("--eval-limit <N>")]
    [Description("Score only the first N held-out examples.")]
    public int? EvalLimit { get; init; }

    [CommandOption("--output <DIR>")]
    [Description("Where adapters and checkpoints go. Default: runs/train-<time>.")]
    public string? Output { get; init; }

    [CommandOption("--resume")]
    [Description("Continue from the latest checkpoint in --output.")]
    public bool Resume { get; init; }

    [CommandOption("--steps <N>")] public int? Steps { get; init; }
    [CommandOption("--batch-size <N>")] public int? BatchSize { get; init; }
    [CommandOption("--grad-accum <N>")] public int? GradientAccumulation { get; init; }
    [CommandOption("--lr <RATE>")] public double? LearningRate { get; init; }

    [CommandOption("--schedule <KIND>")]
    [Description("constant, cosine or linear (after --warmup steps of linear warm-up).")]
    public string? Schedule { get; init; }

    [CommandOption("--warmup <N>")] public int? Warmup { get; init; }
    [CommandOption("--max-grad-norm <X>")] public double? MaxGradNorm { get; init; }
    [CommandOption("--max-length <N>")] public int? MaxLength { get; init; }
    [CommandOption("--save-every <N>")] public int? SaveEvery { get; init; }
    [CommandOption("--lora-r <N>")] public int? LoraRank { get; init; }
    [CommandOption("--lora-alpha <X>")] public double? LoraAlpha { get; init; }
    [CommandOption("--lora-dropout <X>")] public double? LoraDropout { get; init; }

    [CommandOption("--lora-targets <LIST>")]
    [Description("Comma-separated projections, e.g. q_proj,v_proj. Default: all seven.")]
    public string? LoraTargets { get; init; }

    [CommandOption("--template <NAME>")]
    [Description("Prompt template: alpaca or vicuna.")]
    [DefaultValue("alpaca")]
    public string Template { get; init; } = "alpaca";

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
        return s.Task.ToLowerInvariant() switch
        {
            "sft" => ExecuteSft(s, cancellationToken),
            "dpo" => DpoTraining.Execute(s, cancellationToken),
            _ => throw new ArgumentException($"--task '{s.Task}' is not one of sft, dpo"),
        };
    }

    int ExecuteSft(TrainSettings s, CancellationToken cancellationToken)
    {
        int threads = TorchRuntime.ConfigureThreads(s.Threads);
        var device = TorchRuntime.ParseDevice(s.Device);
        bool embedded = s.Model is null && s.Data is null;
        var defaults = embedded ? EmbeddedDefault.Ensure(message => AnsiConsole.MarkupLineInterpolated($"[grey]{message}[/]")) : null;
        string modelDir = s.Model ?? defaults?.ModelDirectory ?? EmbeddedDefault.Ensure().ModelDirectory;
        string dataPath = s.Data ?? defaults?.TrainPath ?? throw new ArgumentException("--data is required with --model");
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

        using var tracker = MetricsTrackers.Open(s.ReportTo, output);
        if (before is not null)
            tracker.Log(0, new Dictionary<string, double> { ["eval/loss"] = before.Loss, ["eval/exact_match"] = before.ExactMatch });
        ProgressDisplay.Create()
            .Start(ctx =>
            {
                var task = ctx.AddTask("training", maxValue: training.MaxSteps);
                task.Value = trainer.Step;
                trainer.Train(examples, new SynchronousProgress<TrainingProgress>(p =>
                {
                    tracker.Log(p.Step, new Dictionary<string, double>
                    {
                        ["train/loss"] = p.Loss, ["train/learning_rate"] = p.LearningRate, ["train/grad_norm"] = p.GradNorm, ["train/tokens_per_second"] = p.TokensPerSecond,
                    });
                    task.Value = p.Step;
                    task.Description = $"step {p.Step}/{p.TotalSteps} loss {p.Loss:F4} lr {p.LearningRate:G3} {p.TokensPerSecond:F0} tok/s";
                }), t => TrainingCheckpoint.Save(output, model, lora, t, ModelName.Of(modelDir)), cancellationToken);
            });

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

    internal static LearningRateScheduleKind? ParseSchedule(string? name) => name?.ToLowerInvariant() switch
    {
        null => null,
        "constant" => LearningRateScheduleKind.Constant,
        "cosine" => LearningRateScheduleKind.Cosine,
        "linear" => LearningRateScheduleKind.Linear,
        _ => throw new ArgumentException($"--schedule '{name}' is not one of constant, cosine, linear"),
    };
}

/// <summary>Progress&lt;T&gt; posts to the thread pool; the progress bar wants the update now, on this thread.</summary>
internal sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
