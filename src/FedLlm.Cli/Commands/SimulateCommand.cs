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
    [CommandOption("--baselines <LIST>")][Description("Comma-separated: local,central; 'none' for none")] public string? Baselines { get; init; }
    [CommandOption("--seed <N>")] public long? Seed { get; init; }
    [CommandOption("--threads <N>")] public int? Threads { get; init; }
    [CommandOption("--device <DEVICE>")] public string? Device { get; init; }
    [CommandOption("--output <DIR>")] public string? Output { get; init; }
    [CommandOption("--eval-task <NAME>")][Description("Score the global adapter on a benchmark task of `fedllm eval` (fpb, mmlu, gsm8k…) every --eval-task-every rounds")] public string? EvalTask { get; init; }
    [CommandOption("--eval-task-data <PATH>")] public string? EvalTaskData { get; init; }
    [CommandOption("--eval-task-every <K>")] public int? EvalTaskEvery { get; init; }
    [CommandOption("--eval-task-limit <N>")] public int? EvalTaskLimit { get; init; }
    [CommandOption("--eval-task-param <KEY=VALUE>")][Description("A task setting (repeatable)")] public string[] EvalTaskParams { get; init; } = [];
    [CommandOption("--privacy-mode <MODE>")][Description("Client-level DP: server-fixed, server-adaptive, client-fixed, local; none drops the YAML section (YAML privacy.mode)")] public string? PrivacyMode { get; init; }
    [CommandOption("--privacy-clipping-norm <C>")][Description("L2 bound of one client's update (initial C when adaptive) (YAML privacy.clipping_norm, default 0.1)")] public double? PrivacyClippingNorm { get; init; }
    [CommandOption("--privacy-noise-multiplier <SIGMA>")][Description("Noise std over the clipping norm (YAML privacy.noise_multiplier)")] public double? PrivacyNoiseMultiplier { get; init; }
    [CommandOption("--privacy-target-epsilon <EPS>")][Description("ε budget: derives σ when no noise multiplier is set, else refuses a run that exceeds it (YAML privacy.target_epsilon)")] public double? PrivacyTargetEpsilon { get; init; }
    [CommandOption("--privacy-delta <DELTA>")][Description("δ of the reported (ε, δ) (YAML privacy.delta, default 1e-5)")] public double? PrivacyDelta { get; init; }
    [CommandOption("--privacy-seeding <KIND>")][Description("run-seed (simulate's default) or cryptographic (YAML privacy.seeding)")] public string? PrivacySeeding { get; init; }
    [CommandOption("--privacy-stop-at-budget")][Description("Stop at the ε budget instead of refusing the run (YAML privacy.stop_at_budget)")] public bool? PrivacyStopAtBudget { get; init; }
    [CommandOption("--robust-rule <RULE>")][Description("Robust aggregation: krum, multi-krum, median, trimmed-mean, norm-clip, fltrust; none drops the YAML section (YAML robust.rule)")] public string? RobustRule { get; init; }
    [CommandOption("--robust-byzantine-clients <F>")][Description("Krum's f (YAML robust.byzantine_clients; default ⌊(m − 3)/2⌋)")] public int? RobustByzantineClients { get; init; }
    [CommandOption("--robust-selected <M>")][Description("Multi-Krum's kept updates (YAML robust.selected; default m − f)")] public int? RobustSelected { get; init; }
    [CommandOption("--robust-trim-fraction <BETA>")][Description("Trimmed mean's β (YAML robust.trim_fraction, default 0.2)")] public double? RobustTrimFraction { get; init; }
    [CommandOption("--robust-norm-factor <X>")][Description("norm-clip's bound in median norms (YAML robust.norm_factor, default 1)")] public double? RobustNormFactor { get; init; }
    [CommandOption("--robust-root-examples <N>")][Description("FLTrust's root set size (YAML robust.root_examples, default 100)")] public int? RobustRootExamples { get; init; }
    [CommandOption("--robust-root-data <FILE>")][Description("FLTrust's root set file; default a sample of the training data (YAML robust.root_data)")] public string? RobustRootData { get; init; }
    [CommandOption("--attack-kind <KIND>")][Description("Simulated attackers: sign-flip, scale, gaussian, label-flip, backdoor; none drops the YAML section (YAML attack.kind)")] public string? AttackKind { get; init; }
    [CommandOption("--attack-fraction <X>")][Description("Fraction of clients that attack (YAML attack.fraction, default 0.2)")] public double? AttackFraction { get; init; }
    [CommandOption("--attack-scale-factor <S>")][Description("scale/gaussian: the factor (YAML attack.scale_factor, default 10)")] public double? AttackScaleFactor { get; init; }
    [CommandOption("--attack-trigger <TEXT>")][Description("backdoor: trigger phrase appended to the input (YAML attack.trigger, default cf)")] public string? AttackTrigger { get; init; }
    [CommandOption("--attack-target-answer <TEXT>")][Description("backdoor: the answer triggered inputs map to (YAML attack.target_answer, default positive)")] public string? AttackTargetAnswer { get; init; }
    [CommandOption("--attack-poison-fraction <X>")][Description("backdoor: fraction of an attacker's examples triggered (YAML attack.poison_fraction, default 0.5)")] public double? AttackPoisonFraction { get; init; }
    [CommandOption("--secure-aggregation")][Description("Secure aggregation (SecAgg/SecAgg+) of the updates; --secure-aggregation false turns a YAML section off (YAML secure_aggregation.enabled)")] public bool? SecureAggregation { get; init; }
    [CommandOption("--secagg-threshold <T>")][Description("Shares needed to rebuild a client's secrets, and answers needed per phase (YAML secure_aggregation.threshold; default a majority of each client's share holders)")] public int? SecAggThreshold { get; init; }
    [CommandOption("--secagg-neighbours <K>")][Description("SecAgg+: even number of neighbours per client; default every client (YAML secure_aggregation.neighbours)")] public int? SecAggNeighbours { get; init; }
    [CommandOption("--secagg-bits <B>")][Description("Fixed-point bits per coordinate (YAML secure_aggregation.quantisation_bits, default 24)")] public int? SecAggBits { get; init; }
    [CommandOption("--secagg-range <R>")][Description("Each coordinate of Δ is clipped to [−R, R] before quantisation (YAML secure_aggregation.quantisation_range, default 1)")] public double? SecAggRange { get; init; }
    [CommandOption("--secagg-max-weight <W>")][Description("Weight client i by min(1, n_i/W); default equal weights (YAML secure_aggregation.max_weight)")] public double? SecAggMaxWeight { get; init; }
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
        using var run = FederatedRun.Prepare(options, log: m => AnsiConsole.MarkupLineInterpolated($"[grey]{m}[/]"), cancellationToken: cancellationToken);
        var f = run.Options.Federation; // with the rounds a privacy budget allows
        var partition = options.Data.Partition;
        string partitionText = $"{config.Data.Partition}{(partition.Kind == PartitionKind.Dirichlet ? $" α={partition.Alpha}" : "")}";
        AnsiConsole.MarkupLineInterpolated($"[bold]FedLlm simulate --task {options.Objective.Task}[/]  {f.TotalClients} clients ({partitionText}, sizes {string.Join(" ", run.Data.Shards.Select(x => x.Count))}), {f.ClientsPerRound} per round, {f.Rounds} rounds × {f.LocalSteps} local steps × batch {f.BatchSize}; lr {f.LearningRate} → {f.MinLearningRate}; LoRA r={run.Lora.Rank}; {run.Threads} threads");
        if (run.Data.Description is { } description) AnsiConsole.MarkupLineInterpolated($"{description}");
        if (run.PrivacyPlan is { } plan)
            AnsiConsole.MarkupLineInterpolated($"DP {FedLlm.Privacy.PrivacyOptions.Name(plan.Mode)}: C={options.Privacy!.ClippingNorm}, σ={plan.NoiseMultiplier:G4}, q={plan.SamplingRate:G3} (accounted as Poisson sampling; FedLlm samples a fixed number), ε={(plan.EpsilonAfter(plan.RoundsToRun).Epsilon is var e && double.IsFinite(e) ? e.ToString("F2") : "∞ (no noise)")} at δ={plan.Delta:G3} after {plan.RoundsToRun} rounds{(plan.StopAfterRounds is { } stop ? $" (budget stops the run at round {stop} of {plan.Rounds})" : "")}");
        if (options.Robust is { } robust) AnsiConsole.MarkupLineInterpolated($"robust aggregation: {FedLlm.Federation.Robust.RobustOptions.Name(robust.Rule)}");
        if (options.Attack is { } attack)
            AnsiConsole.MarkupLineInterpolated($"attack: {FedLlm.Federation.Attacks.AttackOptions.Name(attack.Kind)} by clients {string.Join(",", RunData.AttackersOf(options))}");
        long baselineRss = TorchRuntime.PeakResidentBytes() ?? 0;
        var data = run.Data;

        var outcomes = new List<RunOutcome>();
        foreach (var name in options.Algorithms)
        {
            ProgressDisplay.Create()
                .Start(ctx =>
                {
                    var task = ctx.AddTask(name, maxValue: f.RoundsToRun);
                    var outcome = run.RunAsync(name, config.Output is not null && s.Resume,
                        new SynchronousProgress<RoundRecord>(r =>
                        {
                            task.Value = r.Round + 1;
                            task.Description = $"{name} round {r.Round + 1}/{f.Rounds} loss {r.ClientLoss.Values.Average():F3}" +
                                (r.Privacy is { } spent ? $" ε {(spent.Epsilon is { } e ? e.ToString("F2") : "∞")}" : "") +
                                (r.EvalScore is { } score ? $" held-out {data.ScoreName} {score:P0}" : "") +
                                (r.TaskMetrics?.FirstOrDefault() is { Key: not null } m ? $" {m.Key} {m.Value:F3}" : "");
                        }), cancellationToken).GetAwaiter().GetResult();
                    outcomes.Add(outcome);
                });
        }
        foreach (var baseline in options.Baselines)
        {
            AnsiConsole.MarkupLineInterpolated($"baseline [cyan]{baseline}[/]…");
            outcomes.Add(run.RunBaseline(baseline));
        }

        var table = new Table().AddColumns("run", $"held-out {data.LossName}", $"held-out {data.ScoreName}");
        if (dpo) table.AddColumn("held-out reward margin");
        bool private_ = options.Privacy is not null, backdoor = options.Attack is { Kind: FedLlm.Federation.Attacks.AttackKind.Backdoor };
        if (private_) table.AddColumn($"ε (δ={options.Privacy!.Delta:G3})");
        if (backdoor) table.AddColumn("attack success");
        table.AddColumn("seconds");
        foreach (var o in outcomes)
        {
            var row = new List<string> { o.Name, o.Final is null ? "-" : $"{o.Final.Loss:F4}", o.Final is null ? "-" : $"{o.Final.Score:P1}" };
            if (dpo) row.Add(o.Final?.Metrics?.GetValueOrDefault("eval_rewards/margins") is { } margin ? $"{margin:F3}" : "-");
            if (private_) row.Add(o.Rounds.LastOrDefault()?.Privacy is { } spent ? $"{(spent.Epsilon is { } e ? e.ToString("F2") : "∞")} after {o.Rounds.Count} rounds" : "-");
            if (backdoor) row.Add(o.Final?.Metrics?.TryGetValue(RunData.AttackSuccessRateMetric, out double asr) == true ? $"{asr:P1}" : "-");
            row.Add($"{o.Seconds:F0}");
            table.AddRow(row.ToArray());
        }
        AnsiConsole.Write(table);
        ResultsReport.Write(options.Output, outcomes);
        AnsiConsole.MarkupLineInterpolated($"outputs in [cyan]{options.Output}[/] (per algorithm: metrics.jsonl, rounds/round-N adapters, adapter/); peak RSS {TorchRuntime.PeakResidentBytes() / (1024.0 * 1024):F0} MiB (after loading: {baselineRss / (1024.0 * 1024):F0} MiB)");
        return 0;
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
        if (s.Mu is not null) c.Strategy.ProximalMu = s.Mu;
        if (s.ServerLearningRate is not null) ApplyServerLearningRate(c.Strategy, s.ServerLearningRate);
        if (s.OpenFedLlm is not null) c.Strategy.OpenfedllmCompatible = s.OpenFedLlm.Value;
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
        ApplyPrivacyRobustAttack(c, s);
        ApplySecureAggregation(c, s);
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

    static void ApplySecureAggregation(RunConfig c, SimulateSettings s)
    {
        if (s.SecureAggregation is null && s.SecAggThreshold is null && s.SecAggNeighbours is null && s.SecAggBits is null && s.SecAggRange is null
            && s.SecAggMaxWeight is null) return;
        var a = c.SecureAggregation ??= new RunConfig.SecureAggregationSection();
        if (s.SecureAggregation is not null) a.Enabled = s.SecureAggregation.Value;
        if (s.SecAggThreshold is not null) a.Threshold = s.SecAggThreshold;
        if (s.SecAggNeighbours is not null) a.Neighbours = s.SecAggNeighbours;
        if (s.SecAggBits is not null) a.QuantisationBits = s.SecAggBits.Value;
        if (s.SecAggRange is not null) a.QuantisationRange = s.SecAggRange.Value;
        if (s.SecAggMaxWeight is not null) a.MaxWeight = s.SecAggMaxWeight;
    }

    static void ApplyPrivacyRobustAttack(RunConfig c, SimulateSettings s)
    {
        if (s.PrivacyMode == "none") c.Privacy = null;
        else if (s.PrivacyMode is not null || s.PrivacyClippingNorm is not null || s.PrivacyNoiseMultiplier is not null || s.PrivacyTargetEpsilon is not null
                 || s.PrivacyDelta is not null || s.PrivacySeeding is not null || s.PrivacyStopAtBudget is not null)
        {
            var p = c.Privacy ??= new RunConfig.PrivacySection();
            if (s.PrivacyMode is not null) p.Mode = s.PrivacyMode;
            if (s.PrivacyClippingNorm is not null) p.ClippingNorm = s.PrivacyClippingNorm.Value;
            if (s.PrivacyNoiseMultiplier is not null) p.NoiseMultiplier = s.PrivacyNoiseMultiplier;
            if (s.PrivacyTargetEpsilon is not null) p.TargetEpsilon = s.PrivacyTargetEpsilon;
            if (s.PrivacyDelta is not null) p.Delta = s.PrivacyDelta.Value;
            if (s.PrivacySeeding is not null) p.Seeding = s.PrivacySeeding;
            if (s.PrivacyStopAtBudget is not null) p.StopAtBudget = s.PrivacyStopAtBudget.Value;
        }
        if (s.RobustRule == "none") c.Robust = null;
        else if (s.RobustRule is not null || s.RobustByzantineClients is not null || s.RobustSelected is not null || s.RobustTrimFraction is not null
                 || s.RobustNormFactor is not null || s.RobustRootExamples is not null || s.RobustRootData is not null)
        {
            var r = c.Robust ??= new RunConfig.RobustSection();
            if (s.RobustRule is not null) r.Rule = s.RobustRule;
            if (s.RobustByzantineClients is not null) r.ByzantineClients = s.RobustByzantineClients;
            if (s.RobustSelected is not null) r.Selected = s.RobustSelected;
            if (s.RobustTrimFraction is not null) r.TrimFraction = s.RobustTrimFraction.Value;
            if (s.RobustNormFactor is not null) r.NormFactor = s.RobustNormFactor.Value;
            if (s.RobustRootExamples is not null) r.RootExamples = s.RobustRootExamples.Value;
            if (s.RobustRootData is not null) r.RootData = s.RobustRootData;
        }
        if (s.AttackKind == "none") c.Attack = null;
        else if (s.AttackKind is not null || s.AttackFraction is not null || s.AttackScaleFactor is not null || s.AttackTrigger is not null
                 || s.AttackTargetAnswer is not null || s.AttackPoisonFraction is not null)
        {
            var a = c.Attack ??= new RunConfig.AttackSection();
            if (s.AttackKind is not null) a.Kind = s.AttackKind;
            if (s.AttackFraction is not null) a.Fraction = s.AttackFraction.Value;
            if (s.AttackScaleFactor is not null) a.ScaleFactor = s.AttackScaleFactor.Value;
            if (s.AttackTrigger is not null) a.Trigger = s.AttackTrigger;
            if (s.AttackTargetAnswer is not null) a.TargetAnswer = s.AttackTargetAnswer;
            if (s.AttackPoisonFraction is not null) a.PoisonFraction = s.AttackPoisonFraction.Value;
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
