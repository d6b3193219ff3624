using System.ComponentModel;
using FedLlm.Data.Partitioning;
using FedLlm.Federation;
using FedLlm.Runs;
using FedLlm.Runtime;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class SimulateSettings : CommandSettings
{
    [CommandOption("--task <TASK>")][Description("sft (instruction tuning, default) or dpo (preference alignment)")] public string? Task { get; init; }
    [CommandOption("--dataset <KIND>")][Description("Data schema: alpaca (sft); generic-preference, ultrafeedback, hh-rlhf (dpo)")] public string? Dataset { get; init; }
    [CommandOption("--beta <X>")][Description("DPO β (default 0.1)")] public double? Beta { get; init; }
    [CommandOption("--reference-adapter <DIR>")][Description("DPO: a frozen PEFT adapter (e.g. the SFT one) as reference policy and starting point")] public string? ReferenceAdapter { get; init; }

    [CommandOption("--config <FILE>")]
    [Description("run.yaml (sections model, data, federation, strategy, lora, baselines, output). Flags override it.")]
    public string? Config { get; init; }

    [CommandOption("--model <DIR>")] public string? Model { get; init; }
    [CommandOption("--base-dtype <DTYPE>")][Description("fp32, bf16, int8 or nf4 (YAML model.base_dtype)")] public string? BaseDtype { get; init; }
    [CommandOption("--activation-checkpointing")][Description("Recompute layer activations in backward (YAML model.activation_checkpointing)")] public bool? ActivationCheckpointing { get; init; }
    [CommandOption("--data <FILE>")] public string? Data { get; init; }
    [CommandOption("--eval-data <FILE>")] public string? EvalData { get; init; }
    [CommandOption("--eval-limit <N>")] public int? EvalLimit { get; init; }
    [CommandOption("--partition <KIND>")][Description("iid or dirichlet")] public string? Partition { get; init; }
    [CommandOption("--alpha <X>")][Description("Dirichlet concentration")] public double? Alpha { get; init; }
    [CommandOption("--algorithm <NAMES>")][Description("Comma-separated: fedavg,fedprox,scaffold,fedavgm,fedadagrad,fedyogi,fedadam or all")] public string? Algorithm { get; init; }
    [CommandOption("--rounds <N>")] public int? Rounds { get; init; }
    [CommandOption("--clients <N>")] public int? Clients { get; init; }
    [CommandOption("--clients-per-round <N>")] public int? ClientsPerRound { get; init; }
    [CommandOption("--local-steps <N>")] public int? LocalSteps { get; init; }
    [CommandOption("--batch-size <N>")] public int? BatchSize { get; init; }
    [CommandOption("--grad-accum <N>")] public int? GradientAccumulation { get; init; }
    [CommandOption("--lr <RATE>")] public double? LearningRate { get; init; }
    [CommandOption("--min-lr <RATE>")] public double? MinLearningRate { get; init; }
    [CommandOption("--mu <X>")][Description("FedProx proximal μ")] public double? Mu { get; init; }
    [CommandOption("--server-lr <X>")][Description("Server learning rate: one number for all, or per algorithm: fedavgm=1,fedadam=0.01")] public string? ServerLearningRate { get; init; }
    [CommandOption("--openfedllm-compatible")][Description("Reproduce OpenFedLLM's update rules instead of the papers'")] public bool? OpenFedLlm { get; init; }
    [CommandOption("--decay-server-learning-rate")][Description("Scale FedAvgM's and FedOpt's server learning rate each round by the clients' cosine, lr_r / lr0 (YAML strategy.decay_server_learning_rate)")] public bool? DecayServerLearningRate { get; init; }
    [CommandOption("--keep-optimizer-state")] public bool? KeepOptimizerState { get; init; }
    [CommandOption("--max-grad-norm <X>")] public double? MaxGradNorm { get; init; }
    [CommandOption("--max-length <N>")] public int? MaxLength { get; init; }
    [CommandOption("--evaluate-every <N>")] public int? EvaluateEvery { get; init; }
    [CommandOption("--template <NAME>")] public string? Template { get; init; }
    [CommandOption("--skip-bad")] public bool? SkipBad { get; init; }
    [CommandOption("--server-momentum <X>")] public double? ServerMomentum { get; init; }
    [CommandOption("--beta1 <X>")] public double? Beta1 { get; init; }
    [CommandOption("--beta2 <X>")] public double? Beta2 { get; init; }
    [CommandOption("--tau <X>")] public double? Tau { get; init; }
    [CommandOption("--lora-dropout <X>")] public double? LoraDropout { get; init; }
    [CommandOption("--lora-targets <LIST>")] public string? LoraTargets { get; init; }
    [CommandOption("--lora-r <N>")] public int? LoraRank { get; init; }
    [CommandOption("--lora-alpha <X>")] public double? LoraAlpha { get; init; }
    [CommandOption("--baselines <LIST>")][Description("Comma-separated: local,central (1-client federations with the clients' recipe), local-continuous,central-continuous (one AdamW, per-step cosine); 'none' for none")] public string? Baselines { get; init; }
    [CommandOption("--seed <N>")] public long? Seed { get; init; }
    [CommandOption("--seeds <N>")][Description("Run every algorithm and baseline with N seeds (--seed, seed+1, …; each into OUTPUT/seed-S) and report mean ± standard deviation (YAML seeds)")] public int? Seeds { get; init; }
    [CommandOption("--threads <N>")] public int? Threads { get; init; }
    [CommandOption("--device <DEVICE>")] public string? Device { get; init; }
    [CommandOption("--output <DIR>")] public string? Output { get; init; }
    [CommandOption("--eval-task <NAME>")][Description("Score the global adapter on a benchmark task of `fedllm eval` (fpb, mmlu, gsm8k…) every --eval-task-every rounds")] public string? EvalTask { get; init; }
    [CommandOption("--eval-task-data <PATH>")] public string? EvalTaskData { get; init; }
    [CommandOption("--eval-task-every <K>")] public int? EvalTaskEvery { get; init; }
    [CommandOption("--eval-task-limit <N>")] public int? EvalTaskLimit { get; init; }
    [CommandOption("--eval-task-param <KEY=VALUE>")][Description("A task setting (repeatable)")] public string[] EvalTaskParams { get; init; } = [];
    [CommandOption("--resume")][Description("Continue each algorithm from its last committed round in --output")] public bool Resume { get; init; }
}

/// <summary><c>fedllm simulate</c>: federated instruction tuning of many clients in one process, with baselines.</summary>
public sealed class SimulateCommand : Command<SimulateSettings>
{
    public override int Execute(CommandContext context, SimulateSettings s, CancellationToken cancellationToken)
    {
        var config = s.Config is null ? RunConfig.EmbeddedDefault(s.Task ?? "sft") : RunConfig.Load(s.Config);
        Apply(config, s);
        bool dpo = config.Task == "dpo";
        var options = config.ToRunOptions(Path.Combine("runs", $"simulate{(dpo ? "-dpo" : "")}-{DateTime.Now:yyyyMMdd-HHmmss}"));
        bool resume = config.Output is not null && s.Resume;
        var seeds = new List<SeedOutcomes>();
        ReportLabels labels = new();
        for (int k = 0; k < options.Seeds; k++)
        {
            var seedOptions = options.ForSeed(k);
            using var run = FederatedRun.Prepare(seedOptions, log: m => AnsiConsole.MarkupLineInterpolated($"[grey]{m}[/]"), cancellationToken: cancellationToken);
            labels = run.Labels;
            var f = seedOptions.Federation;
            var partition = seedOptions.Data.Partition;
            string partitionText = $"{config.Data.Partition}{(partition.Kind == PartitionKind.Dirichlet ? $" α={partition.Alpha}" : "")}";
            AnsiConsole.MarkupLineInterpolated($"[bold]FedLlm simulate --task {options.Objective.Task}[/]  seed {f.Seed}{(options.Seeds > 1 ? $" ({k + 1} of {options.Seeds}, into {seedOptions.Output})" : "")}: {f.TotalClients} clients ({partitionText}, sizes {string.Join(" ", run.Data.Shards.Select(x => x.Count))}), {f.ClientsPerRound} per round, {f.Rounds} rounds × {f.LocalSteps} local steps × batch {f.BatchSize}; lr {f.LearningRate} → {f.MinLearningRate}; LoRA r={run.Lora.Rank}; {run.Threads} threads");
            if (run.Data.Description is { } description) AnsiConsole.MarkupLineInterpolated($"{description}");
            long baselineRss = TorchRuntime.PeakResidentBytes() ?? 0;
            var outcomes = RunSeed(run, seedOptions, resume, cancellationToken);
            AnsiConsole.Write(SeedTable(outcomes, labels, dpo));
            ResultsReport.Write(seedOptions.Output, outcomes, labels, f.Seed);
            seeds.Add(new SeedOutcomes(f.Seed, outcomes));
            AnsiConsole.MarkupLineInterpolated($"outputs in [cyan]{seedOptions.Output}[/] (per algorithm: metrics.jsonl, rounds/round-N adapters for rounds 1 … {f.Rounds}, adapter/; local/client-i/, central/; results.json, rounds.png); peak RSS {TorchRuntime.PeakResidentBytes() / (1024.0 * 1024):F0} MiB (after loading: {baselineRss / (1024.0 * 1024):F0} MiB)");
        }
        if (options.Seeds > 1)
        {
            AnsiConsole.MarkupLineInterpolated($"[bold]over {options.Seeds} seeds ({string.Join(", ", seeds.Select(x => x.Seed))}): mean ± standard deviation[/]");
            AnsiConsole.Write(SummaryTable(seeds, labels));
            ResultsReport.Write(options.Output, seeds, labels);
            AnsiConsole.MarkupLineInterpolated($"summary in [cyan]{options.Output}[/] (results.json, rounds.png with ± sd bands)");
        }
        if (labels.ScoreFloor is { } floor)
            AnsiConsole.MarkupLineInterpolated($"constant-answer floor: {floor:P1} of the held-out set has the most common answer, so a model that always gives it scores that {labels.ScoreName}");
        if (SeedSummary.Paired(seeds, "fedavg", "local-only") is { } paired)
            AnsiConsole.MarkupLineInterpolated($"fedavg − local-only, {labels.ScoreName}: {string.Join(", ", paired.ScoreBySeed.Select(d => $"{d * 100:+0.0;-0.0} pts"))}{(paired.ScoreBySeed.Count > 1 ? $" (mean {paired.Score.Mean * 100:+0.0;-0.0} ± {paired.Score.StandardDeviation * 100:0.0} pts, ahead on {paired.Wins} of {paired.ScoreBySeed.Count} seeds)" : "")}; {labels.LossName}: {paired.Loss.Mean:+0.000;-0.000}");
        return 0;
    }

    static List<RunOutcome> RunSeed(FederatedRun run, RunOptions options, bool resume, CancellationToken cancellationToken)
    {
        var f = options.Federation;
        var data = run.Data;
        var outcomes = new List<RunOutcome>();
        foreach (var name in options.Algorithms)
        {
            ProgressDisplay.Create()
                .Start(ctx =>
                {
                    var task = ctx.AddTask(name, maxValue: f.Rounds);
                    var outcome = run.RunAsync(name, resume,
                        new SynchronousProgress<RoundRecord>(r =>
                        {
                            task.Value = r.Number;
                            task.Description = $"{name} round {r.Number}/{f.Rounds} loss {r.ClientLoss.Values.Average():F3}" +
                                (r.EvalScore is { } score ? $" held-out {data.ScoreName} {score:P0}" : "") +
                                (r.TaskMetrics?.FirstOrDefault() is { Key: not null } m ? $" {m.Key} {m.Value:F3}" : "");
                        }), cancellationToken).GetAwaiter().GetResult();
                    outcomes.Add(outcome);
                });
        }
        foreach (var baseline in options.Baselines)
        {
            ProgressDisplay.Create()
                .Start(ctx =>
                {
                    // local trains every client for all rounds; the continuous baselines report no rounds.
                    int runs = baseline == "local" ? data.Shards.Count : 1;
                    var task = ctx.AddTask(baseline, maxValue: baseline.EndsWith("-continuous", StringComparison.Ordinal) ? 1 : f.Rounds * runs);
                    var outcome = run.RunBaselineAsync(baseline, resume, (client, r) =>
                    {
                        task.Value = client * f.Rounds + r.Number;
                        task.Description = $"{baseline}{(runs > 1 ? $" client {client + 1}/{runs}" : "")} round {r.Number}/{f.Rounds} loss {r.ClientLoss.Values.Average():F3}";
                    }, cancellationToken).GetAwaiter().GetResult();
                    task.Value = task.MaxValue;
                    outcomes.Add(outcome);
                });
        }
        return outcomes;
    }

    static Table SeedTable(IReadOnlyList<RunOutcome> outcomes, ReportLabels labels, bool dpo)
    {
        var table = new Table().AddColumns("run", $"held-out {labels.LossName}", $"held-out {labels.ScoreName}");
        if (!dpo) table.AddColumn("held-out macro-F1");
        if (dpo) table.AddColumn("held-out reward margin");
        table.AddColumns("clients alone: min–max", "seconds");
        foreach (var o in outcomes)
        {
            var row = new List<string> { o.Name, o.Final is null ? "-" : $"{o.Final.Loss:F4}", o.Final is null ? "-" : $"{o.Final.Score:P1}" };
            string metric = dpo ? "eval_rewards/margins" : SimulationRunner.MacroF1Metric;
            row.Add(o.Final?.Metrics?.GetValueOrDefault(metric) is { } value ? (dpo ? $"{value:F3}" : $"{value:P1}") : "-");
            row.Add(o.Clients is { } clients && BaselineMath.Spread(clients) is { } spread ? $"{spread.MinScore:P1} – {spread.MaxScore:P1}" : "");
            row.Add($"{o.Seconds:F0}");
            table.AddRow(row.ToArray());
        }
        return table;
    }

    static Table SummaryTable(IReadOnlyList<SeedOutcomes> seeds, ReportLabels labels)
    {
        static string Pm(SeedStatistic? s, bool percent) =>
            s is null ? "-" : percent ? $"{s.Mean * 100:F1} ± {s.StandardDeviation * 100:F1} %" : $"{s.Mean:F3} ± {s.StandardDeviation:F3}";
        var table = new Table().AddColumns("run", $"held-out {labels.LossName}", $"held-out {labels.ScoreName}", "held-out macro-F1", "seconds (mean)");
        foreach (var row in SeedSummary.Rows(seeds))
            table.AddRow(row.Name, Pm(row.Loss, false), Pm(row.Score, true), Pm(row.MacroF1, true), $"{row.Seconds:F0}");
        return table;
    }

    static void Apply(RunConfig c, SimulateSettings s)
    {
        if (s.Task is not null) c.Task = s.Task;
        if (s.Dataset is not null) c.Data.Dataset = s.Dataset;
        if (s.Beta is not null) c.Dpo.Beta = s.Beta.Value;
        if (s.ReferenceAdapter is not null) c.Dpo.ReferenceAdapter = s.ReferenceAdapter;
        if (s.Model is not null) c.Model.Path = s.Model;
        if (s.BaseDtype is not null) c.Model.BaseDtype = s.BaseDtype;
        if (s.ActivationCheckpointing is not null) c.Model.ActivationCheckpointing = s.ActivationCheckpointing.Value;
        if (s.Data is not null) c.Data.Path = s.Data;
        if (s.EvalData is not null) c.Data.EvalPath = s.EvalData;
        if (s.EvalLimit is not null) c.Data.EvalLimit = s.EvalLimit;
        if (s.Partition is not null) c.Data.Partition = s.Partition;
        if (s.Alpha is not null) c.Data.Alpha = s.Alpha.Value;
        if (s.Algorithm is not null) c.Strategy.Algorithms = s.Algorithm.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        if (s.Rounds is not null) c.Federation.Rounds = s.Rounds.Value;
        if (s.Clients is not null) c.Federation.Clients = s.Clients;
        if (s.ClientsPerRound is not null) c.Federation.ClientsPerRound = s.ClientsPerRound.Value;
        if (s.LocalSteps is not null) c.Federation.LocalSteps = s.LocalSteps.Value;
        if (s.BatchSize is not null) c.Federation.BatchSize = s.BatchSize.Value;
        if (s.GradientAccumulation is not null) c.Federation.GradientAccumulation = s.GradientAccumulation.Value;
        if (s.LearningRate is not null) c.Federation.LearningRate = s.LearningRate;
        if (s.MinLearningRate is not null) c.Federation.MinLearningRate = s.MinLearningRate;
        if (s.KeepOptimizerState is not null) c.Federation.KeepOptimizerState = s.KeepOptimizerState.Value;
        if (s.Seed is not null) c.Federation.Seed = s.Seed.Value;
        if (s.Seeds is not null) c.Seeds = s.Seeds.Value;
        if (s.Mu is not null) c.Strategy.ProximalMu = s.Mu;
        if (s.ServerLearningRate is not null) ApplyServerLearningRate(c.Strategy, s.ServerLearningRate);
        if (s.OpenFedLlm is not null) c.Strategy.OpenfedllmCompatible = s.OpenFedLlm.Value;
        if (s.DecayServerLearningRate is not null) c.Strategy.DecayServerLearningRate = s.DecayServerLearningRate.Value;
        if (s.MaxGradNorm is not null) c.Federation.MaxGradNorm = s.MaxGradNorm.Value;
        if (s.MaxLength is not null) c.Federation.MaxLength = s.MaxLength.Value;
        if (s.EvaluateEvery is not null) c.Federation.EvaluateEvery = s.EvaluateEvery.Value;
        if (s.Template is not null) c.Data.Template = s.Template;
        if (s.SkipBad is not null) c.Data.SkipBad = s.SkipBad.Value;
        if (s.ServerMomentum is not null) c.Strategy.ServerMomentum = s.ServerMomentum;
        if (s.Beta1 is not null) c.Strategy.Beta1 = s.Beta1;
        if (s.Beta2 is not null) c.Strategy.Beta2 = s.Beta2;
        if (s.Tau is not null) c.Strategy.Tau = s.Tau;
        if (s.LoraDropout is not null) c.Lora.Dropout = s.LoraDropout.Value;
        if (s.LoraTargets is not null) c.Lora.TargetModules = s.LoraTargets.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        if (s.LoraRank is not null) c.Lora.R = s.LoraRank;
        if (s.LoraAlpha is not null) c.Lora.Alpha = s.LoraAlpha;
        if (s.Baselines is not null) c.Baselines = s.Baselines == "none" ? new() : s.Baselines.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        if (s.Threads is not null) c.Threads = s.Threads;
        if (s.Device is not null) c.Device = s.Device;
        if (s.Output is not null) c.Output = s.Output;
        if (s.EvalTask is not null) c.Evaluation.Task = s.EvalTask;
        if (s.EvalTaskData is not null) c.Evaluation.Data = s.EvalTaskData;
        if (s.EvalTaskEvery is not null) c.Evaluation.Every = s.EvalTaskEvery.Value;
        if (s.EvalTaskLimit is not null) c.Evaluation.Limit = s.EvalTaskLimit.Value;
        foreach (var p in s.EvalTaskParams)
        {
            var kv = p.Split('=', 2);
            if (kv.Length != 2) throw new ArgumentException($"--eval-task-param {p}: expected KEY=VALUE");
            c.Evaluation.Params[kv[0].Trim()] = kv[1];
        }
    }

    /// <summary>--server-lr 0.01 sets every algorithm's; --server-lr fedavgm=1,fedadam=0.01 sets each named one.</summary>
    static void ApplyServerLearningRate(RunConfig.StrategySection strategy, string text)
    {
        static double Parse(string value, string text) =>
            double.TryParse(value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v)
                ? v : throw new ArgumentException($"--server-lr '{text}': '{value}' is not a number");
        if (!text.Contains('='))
        {
            strategy.ServerLearningRate = Parse(text.Trim(), text);
            return;
        }
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var pieces = part.Split('=', 2, StringSplitOptions.TrimEntries);
            if (pieces.Length != 2 || pieces[0].Length == 0) throw new ArgumentException($"--server-lr '{text}': expected ALGORITHM=RATE, got '{part}'");
            strategy.ServerLearningRates[pieces[0]] = Parse(pieces[1], text);
        }
    }
}
