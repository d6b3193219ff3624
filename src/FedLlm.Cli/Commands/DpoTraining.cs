using FedLlm.Alignment;
using FedLlm.Cli.Parsing;
using FedLlm.Data;
using FedLlm.Data.Datasets;
using FedLlm.Defaults;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Runtime;
using FedLlm.Tokenization;
using FedLlm.Training;
using Spectre.Console;
using static TorchSharp.torch;

namespace FedLlm.Cli.Commands;

/// <summary>
/// <c>fedllm train --task dpo</c>: local DPO of LoRA adapters on preference pairs, with the base model (adapters off) as
/// the reference policy, a progress bar, held-out reward margin / accuracy / loss before and after, and a PEFT adapter.
/// </summary>
internal static class DpoTraining
{
    public static int Execute(TrainSettings s, CancellationToken cancellationToken)
    {
        int threads = TorchRuntime.ConfigureThreads(s.Threads);
        var device = TorchRuntime.ParseDevice(s.Device);
        bool embedded = s.Model is null && s.Data is null;
        var defaults = embedded ? EmbeddedDefault.Ensure(message => AnsiConsole.MarkupLineInterpolated($"[grey]{message}[/]")) : null;
        string modelDir = s.Model ?? defaults?.ModelDirectory ?? EmbeddedDefault.Ensure().ModelDirectory;
        string dataPath = s.Data ?? defaults?.PreferenceTrainPath ?? throw new FedLlm.Configuration.ConfigurationException("--data is required with --model (the embedded data belongs to the embedded model)");
        string? evalPath = s.EvalData ?? defaults?.PreferenceEvalPath;
        var kind = embedded ? DatasetKind.GenericPreference : DatasetKinds.Parse(s.Dataset);
        if (!kind.Info().IsPreference)
            throw new ArgumentException($"--dataset '{s.Dataset}' holds instruction examples; --task dpo needs ultrafeedback, hh-rlhf or generic-preference");
        var recipe = embedded ? EmbeddedDefault.DpoRecipe : null;

        var training = new TrainingOptions
        {
            MaxSteps = s.Steps ?? recipe?.Training.MaxSteps ?? 100,
            BatchSize = s.BatchSize ?? recipe?.Training.BatchSize ?? 8,
            GradientAccumulationSteps = s.GradientAccumulation ?? 1,
            LearningRate = s.LearningRate ?? recipe?.Training.LearningRate ?? 5e-4, // OpenFedLLM's DPO learning rate
            Schedule = TrainCommand.ParseSchedule(s.Schedule) ?? recipe?.Training.Schedule ?? LearningRateScheduleKind.Constant,
            WarmupSteps = s.Warmup ?? recipe?.Training.WarmupSteps ?? 0,
            MaxGradNorm = s.MaxGradNorm ?? 1.0,
            MaxSequenceLength = s.MaxLength ?? PreferencePairBuilder.DefaultMaxLength,
            SaveEverySteps = s.SaveEvery ?? 0,
            Seed = s.Seed,
            OnNonFinite = TrainCommand.ParseNonFinite(s.OnNonFinite),
        };
        var lora = s.ReferenceAdapter is { } referenceDir ? AdapterIO.ReadOptions(referenceDir) : new LoraOptions
        {
            Rank = s.LoraRank ?? recipe?.Lora.Rank ?? 8,
            Alpha = s.LoraAlpha ?? recipe?.Lora.Alpha ?? 16,
            Dropout = s.LoraDropout ?? recipe?.Lora.Dropout ?? 0.05,
            TargetModules = s.LoraTargets?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? LoraOptions.AllLlamaProjections,
        };
        var dpo = new DpoOptions { Beta = s.Beta };
        training.Validate();
        lora.Validate();
        dpo.Validate();
        string output = s.Output ?? Path.Combine("runs", $"train-dpo-{DateTime.Now:yyyyMMdd-HHmmss}");
        var fingerprint = ResumeGuard.TrainingFingerprint(s, modelDir, dataPath, evalPath, training, lora)
            .With("dataset", kind).With("dpo.beta", dpo.Beta).WithData("dpo.reference_adapter_sha256", s.ReferenceAdapter);
        ResumeGuard.Check(s.Resume, s.Output, output, fingerprint);

        var tokenizer = TokenizerLoader.Load(modelDir);
        int padId = tokenizer.PadTokenId ?? 0;
        using var model = s.LoadModel(modelDir, device);
        var builder = new PreferencePairBuilder(tokenizer, training.MaxSequenceLength,
            Math.Min(PreferencePairBuilder.DefaultMaxPromptLength, training.MaxSequenceLength / 2));
        var loadOptions = new DatasetLoadOptions { SkipBad = s.SkipBad };
        var report = new DataReadReport();
        var pairs = DatasetLoader.ReadPreferences(kind, dataPath, loadOptions, report, cancellationToken)
            .Select(r => builder.Build(r.Example)).ToList();
        var heldOut = evalPath is null ? null : DatasetLoader.ReadPreferences(kind, evalPath, loadOptions, new DataReadReport(), cancellationToken)
            .Take(s.EvalLimit ?? int.MaxValue).Select(r => builder.Build(r.Example)).ToList();

        AnsiConsole.MarkupLineInterpolated($"[bold]FedLlm train --task dpo[/]  model [cyan]{modelDir}[/] ({model.Config.Family}, {model.Config.NumHiddenLayers} layers, hidden {model.Config.HiddenSize}, vocab {model.Config.VocabSize}), base {s.BaseDtype}");
        AnsiConsole.MarkupLineInterpolated($"data [cyan]{dataPath}[/] ({kind.Info().Name}): {pairs.Count} pairs ({report}); {pairs.Count(p => p.Truncated)} truncated to {training.MaxSequenceLength} tokens; held-out: {heldOut?.Count.ToString() ?? "none"}");
        AnsiConsole.MarkupLineInterpolated($"DPO β={dpo.Beta}, reference = {(s.ReferenceAdapter is null ? "base model (adapters off)" : $"adapter {s.ReferenceAdapter} (also the starting point)")}; LoRA r={lora.Rank} alpha={lora.Alpha} dropout={lora.Dropout} on {string.Join(",", lora.TargetModules)}; {training.MaxSteps} steps × batch {training.BatchSize} × accumulation {training.GradientAccumulationSteps}, lr {training.LearningRate} {training.Schedule}; {threads} threads on {device}");

        LoraInjector.Inject(model, lora, new Generator((ulong)training.Seed));
        ReferencePolicy? referencePolicy = null;
        if (s.ReferenceAdapter is not null)
        {
            AdapterIO.Load(s.ReferenceAdapter, model);
            referencePolicy = ReferencePolicy.FromAdapterState(AdapterIO.State(model));
        }
        using var referenceOwner = referencePolicy;
        using var trainingReference = new ReferenceLogProbCache(referencePolicy, ownsPolicy: false);
        using var trainer = new DpoTrainer(model, training, dpo, padId, trainingReference);
        if (s.Resume && TrainingCheckpoint.Latest(output) is { } checkpoint)
        {
            var state = TrainingCheckpoint.Restore(checkpoint, model, trainer);
            AnsiConsole.MarkupLineInterpolated($"resumed from [cyan]{checkpoint}[/] at step {state.Step}");
        }
        // One cache per held-out set: π_ref runs once for the before and after scores.
        using var heldOutReference = new ReferenceLogProbCache(referencePolicy, ownsPolicy: false);
        DpoMetrics? before = heldOut is null || trainer.Step > 0 ? null
            : PreferenceEvaluation.Evaluate(model, heldOut, heldOutReference, dpo, padId, training.BatchSize, training.LossChunkTokens);

        ResumeGuard.RecordFresh(s.Resume, output, fingerprint);
        ProgressDisplay.Create()
            .Start(ctx =>
            {
                var task = ctx.AddTask("dpo", maxValue: training.MaxSteps);
                task.Value = trainer.Step;
                trainer.Train(pairs, new SynchronousProgress<TrainingProgress<DpoMetrics>>(p =>
                {
                    task.Value = p.Step;
                    task.Description = $"step {p.Step}/{p.TotalSteps} loss {p.Metrics.Loss:F4} margin {p.Metrics.RewardsMargin:F3} acc {p.Metrics.RewardsAccuracy:P0} lr {p.LearningRate:G3}";
                }), t => TrainingCheckpoint.Save(output, model, lora, t, ModelName.Of(modelDir)), cancellationToken);
            });

        if (trainer.SkippedSteps.Count > 0)
            AnsiConsole.MarkupLineInterpolated($"[yellow]skipped {trainer.SkippedSteps.Count} step(s) with a non-finite loss or gradient: {string.Join(", ", trainer.SkippedSteps)}[/]");
        string adapterDir = Path.Combine(output, "adapter");
        AdapterIO.Save(adapterDir, model, lora, ModelName.Of(modelDir));
        var steps = trainer.StepMetrics;
        int window = Math.Max(1, Math.Min(10, steps.Count / 5));
        var first = DpoMetrics.Aggregate(steps.Take(window));
        var last = DpoMetrics.Aggregate(steps.TakeLast(window));
        var table = new Table().AddColumns("", "before", "after");
        table.AddRow($"training DPO loss (first / last {window} steps)", $"{first.Loss:F4}", $"{last.Loss:F4}");
        if (heldOut is { Count: > 0 })
        {
            var after = PreferenceEvaluation.Evaluate(model, heldOut, heldOutReference, dpo, padId, training.BatchSize, training.LossChunkTokens);
            // After a resume the "before" scores belong to the interrupted run; they are not recomputed.
            string Before(Func<DpoMetrics, string> format) => before is null ? "-" : format(before);
            table.AddRow("held-out reward margin", Before(b => $"{b.RewardsMargin:F4}"), $"{after.RewardsMargin:F4}");
            table.AddRow("held-out reward accuracy", Before(b => $"{b.RewardsAccuracy:P1}"), $"{after.RewardsAccuracy:P1}");
            table.AddRow("held-out DPO loss", Before(b => $"{b.Loss:F4}"), $"{after.Loss:F4}");
            table.AddRow("held-out log p(chosen)", Before(b => $"{b.LogpsChosen:F3}"), $"{after.LogpsChosen:F3}");
            table.AddRow("held-out log p(rejected)", Before(b => $"{b.LogpsRejected:F3}"), $"{after.LogpsRejected:F3}");
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLineInterpolated($"adapter saved to [cyan]{adapterDir}[/] (PEFT format); peak RSS {TorchRuntime.PeakResidentBytes() / (1024.0 * 1024):F0} MiB");
        return 0;
    }
}
