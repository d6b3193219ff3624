using System.ComponentModel;
using FedLlm.Cli.Parsing;
using FedLlm.Configuration;
using FedLlm.Data.Partitioning;
using FedLlm.Federation;
using FedLlm.Federation.Simulation;
using FedLlm.Monitoring;
using FedLlm.Network.Dashboard;
using FedLlm.Runs;
using FedLlm.Runtime;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class SimulateSettings : CommandSettings
{
    [CommandOption("--config <FILE>")]
    [Description("run.yaml: sections model, data, federation, strategy, lora, dpo, evaluation and top-level keys; every key is also a flag, and flags win over the file. Default: the embedded default.")]
    public string? Config { get; init; }

    [CommandOption("--print-config")]
    [Description("Print the effective settings as run.yaml (each value with where it came from: flag, file line, embedded or built-in default) and exit.")]
    public bool PrintConfig { get; init; }

    [CommandOption("--resume")]
    [Description("Continue each algorithm from its last committed round in --output; refused when nothing is there or the folder was started with other settings.")]
    public bool Resume { get; init; }

    [CommandOption("--task <TASK>")][ConfigKey("task")][Description("sft (instruction tuning) or dpo (preference alignment).")] public string? Task { get; init; }
    [CommandOption("--model <DIR>")][ConfigKey("model.path")][Description("Hugging Face checkpoint folder.")] public string? Model { get; init; }
    [CommandOption("--base-dtype <DTYPE>")][ConfigKey("model.base_dtype")][Description("How the frozen base is stored: fp32, bf16, int8 or nf4 (int8/nf4 compute in bf16).")] public string? BaseDtype { get; init; }
    [CommandOption("--activation-checkpointing")][ConfigKey("model.activation_checkpointing")][Description("Recompute each layer's activations in backward: less memory, one more forward.")] public bool? ActivationCheckpointing { get; init; }

    [CommandOption("--data <FILE>")][ConfigKey("data.path")][Description("Training data (JSON, JSONL, .jsonl.gz or Parquet) in the --dataset schema.")] public string? Data { get; init; }
    [CommandOption("--eval-data <FILE>")][ConfigKey("data.eval_data")][Description("Held-out data scored on the global adapter every --eval-every rounds.")] public string? EvalData { get; init; }
    [CommandOption("--eval-limit <N>")][ConfigKey("data.eval_limit")][Description("Score only the first N held-out examples.")] public int? EvalLimit { get; init; }
    [CommandOption("--dataset <KIND>")][ConfigKey("data.dataset")][Description("Schema of --data: alpaca (sft); generic-preference, ultrafeedback or hh-rlhf (dpo).")] public string? Dataset { get; init; }
    [CommandOption("--template <NAME>")][ConfigKey("data.template")][Description("Prompt template of instruction data: alpaca, vicuna, chatml or llama-3.")] public string? Template { get; init; }
    [CommandOption("--partition <KIND>")][ConfigKey("data.partition")][Description("How the data is split among clients: iid, dirichlet (over the label), shards (k labels per client) or quantity (skewed sizes).")] public string? Partition { get; init; }
    [CommandOption("--alpha <X>")][ConfigKey("data.alpha")][Description("Dirichlet concentration α of dirichlet and quantity (smaller = more skewed).")] public double? Alpha { get; init; }
    [CommandOption("--skip-bad")][ConfigKey("data.skip_bad")][Description("Skip malformed records (counted) instead of stopping at the first.")] public bool? SkipBad { get; init; }

    [CommandOption("--rounds <N>")][ConfigKey("federation.rounds")][Description("Federated rounds.")] public int? Rounds { get; init; }
    [CommandOption("--clients <N>")][ConfigKey("federation.clients")][Description("Clients the data is split among.")] public int? Clients { get; init; }
    [CommandOption("--clients-per-round <N>")][ConfigKey("federation.clients_per_round")][Description("Clients sampled each round (at most --clients).")] public int? ClientsPerRound { get; init; }
    [CommandOption("--local-steps <N>")][ConfigKey("federation.local_steps")][Description("Optimizer steps each sampled client takes per round.")] public int? LocalSteps { get; init; }
    [CommandOption("--batch-size <N>")][ConfigKey("federation.batch_size")][Description("Examples per local step.")] public int? BatchSize { get; init; }
    [CommandOption("--gradient-accumulation|--grad-accum <N>")][ConfigKey("federation.gradient_accumulation")][Description("Micro-batches accumulated per local step.")] public int? GradientAccumulation { get; init; }
    [CommandOption("--learning-rate|--lr <RATE>")][ConfigKey("federation.learning_rate")][Description("Clients' learning rate at round 0, decayed by cosine to --min-learning-rate.")] public double? LearningRate { get; init; }
    [CommandOption("--min-learning-rate|--min-lr <RATE>")][ConfigKey("federation.min_learning_rate")][Description("Clients' learning rate at the last round.")] public double? MinLearningRate { get; init; }
    [CommandOption("--max-grad-norm <X>")][ConfigKey("federation.max_grad_norm")][Description("Gradient clipping norm of local steps (0 = none).")] public double? MaxGradNorm { get; init; }
    [CommandOption("--max-length <N>")][ConfigKey("federation.max_length")][Description("Examples are truncated to N tokens.")] public int? MaxLength { get; init; }
    [CommandOption("--keep-optimizer-state")][ConfigKey("federation.keep_optimizer_state")][Description("Clients keep their AdamW moments between rounds (OpenFedLLM resets them).")] public bool? KeepOptimizerState { get; init; }
    [CommandOption("--seed <N>")][ConfigKey("federation.seed")][Description("Seed of sampling, partitioning, LoRA init and dropout.")] public long? Seed { get; init; }
    [CommandOption("--eval-every|--evaluate-every <N>")][ConfigKey("federation.eval_every")][Description("Score the held-out data every N rounds (0 = only after the last).")] public int? EvalEvery { get; init; }

    [CommandOption("--algorithms|--algorithm <NAMES>")][ConfigKey("strategy.algorithms")][Description("Comma-separated: fedavg, fedprox, scaffold, fedavgm, fedadagrad, fedyogi, fedadam, or all; each runs from the same start.")] public string? Algorithms { get; init; }
    [CommandOption("--proximal-mu|--mu <X>")][ConfigKey("strategy.proximal_mu")][Description("FedProx proximal term μ.")] public double? ProximalMu { get; init; }
    [CommandOption("--server-learning-rate|--server-lr <X>")][ConfigKey("strategy.server_learning_rate")][Description("Server learning rate: one number for every algorithm (replacing any per-algorithm rates), or per algorithm: fedavgm=1,fedadam=0.01 (run.yaml strategy.server_learning_rates).")] public string? ServerLearningRate { get; init; }
    [CommandOption("--server-momentum <X>")][ConfigKey("strategy.server_momentum")][Description("FedAvgM server momentum, in [0, 1).")] public double? ServerMomentum { get; init; }
    [CommandOption("--beta1 <X>")][ConfigKey("strategy.beta1")][Description("FedAdam/FedYogi first-moment decay β1, in [0, 1).")] public double? Beta1 { get; init; }
    [CommandOption("--beta2 <X>")][ConfigKey("strategy.beta2")][Description("FedAdam/FedYogi second-moment decay β2, in [0, 1).")] public double? Beta2 { get; init; }
    [CommandOption("--tau <X>")][ConfigKey("strategy.tau")][Description("FedOpt adaptivity τ (added to the root of the second moment).")] public double? Tau { get; init; }
    [CommandOption("--openfedllm-compatible")][ConfigKey("strategy.openfedllm_compatible")][Description("Reproduce OpenFedLLM's update rules instead of the papers'.")] public bool? OpenFedLlm { get; init; }

    [CommandOption("--lora-r <N>")][ConfigKey("lora.r")][Description("LoRA rank.")] public int? LoraRank { get; init; }
    [CommandOption("--lora-alpha <X>")][ConfigKey("lora.alpha")][Description("LoRA α (the update is scaled by α / r).")] public double? LoraAlpha { get; init; }
    [CommandOption("--lora-dropout <X>")][ConfigKey("lora.dropout")][Description("Dropout on the LoRA input, in [0, 1).")] public double? LoraDropout { get; init; }
    [CommandOption("--lora-target-modules|--lora-targets <LIST>")][ConfigKey("lora.target_modules")][Description("Comma-separated projections that get adapters: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.")] public string? LoraTargetModules { get; init; }

    [CommandOption("--beta <X>")][ConfigKey("dpo.beta")][Description("dpo: β, the inverse temperature of the implicit reward.")] public double? Beta { get; init; }
    [CommandOption("--reference-adapter <DIR>")][ConfigKey("dpo.reference_adapter")][Description("dpo: a frozen PEFT adapter (e.g. the SFT one) as reference policy and starting point; none = the base model.")] public string? ReferenceAdapter { get; init; }

    [CommandOption("--eval-task <NAME>")][ConfigKey("evaluation.task")][Description("Score the global adapter on a benchmark of `fedllm eval` (fpb, mmlu, gsm8k, humaneval…) every --eval-task-every rounds.")] public string? EvalTask { get; init; }
    [CommandOption("--eval-task-data <PATH>")][ConfigKey("evaluation.data")][Description("The benchmark's file or folder.")] public string? EvalTaskData { get; init; }
    [CommandOption("--eval-task-every <N>")][ConfigKey("evaluation.every")][Description("Score the benchmark every N rounds.")] public int? EvalTaskEvery { get; init; }
    [CommandOption("--eval-task-limit <N>")][ConfigKey("evaluation.limit")][Description("Score only the first N benchmark items (0 = all).")] public int? EvalTaskLimit { get; init; }
    [CommandOption("--eval-task-few-shot <K>")][ConfigKey("evaluation.few_shot")][Description("Solved examples before each benchmark question.")] public int? EvalTaskFewShot { get; init; }
    [CommandOption("--eval-task-batch-size <N>")][ConfigKey("evaluation.batch_size")][Description("Benchmark items per forward pass.")] public int? EvalTaskBatchSize { get; init; }
    [CommandOption("--eval-task-max-new-tokens <N>")][ConfigKey("evaluation.max_new_tokens")][Description("Generation budget of generative benchmarks (none = the task's own).")] public int? EvalTaskMaxNewTokens { get; init; }
    [CommandOption("--eval-task-param <KEY=VALUE>")][ConfigKey("evaluation.params")][Description("A benchmark setting, repeatable (as --param of `fedllm eval`).")] public string[] EvalTaskParams { get; init; } = [];

    [CommandOption("--federated-evaluate-every <N>")][ConfigKey("federation.federated_evaluate_every")][Description("Federated evaluation every N rounds: the round's clients score the global adapter on their own data (0 = never).")] public int? FederatedEvaluateEvery { get; init; }

    [CommandOption("--privacy-mode <MODE>")][ConfigKey("privacy.mode")][Description("Client-level differential privacy: server-fixed, server-adaptive, client-fixed or local; none drops a privacy section of the --config file.")] public string? PrivacyMode { get; init; }
    [CommandOption("--privacy-clipping-norm <C>")][ConfigKey("privacy.clipping_norm")][Description("L2 bound C of one client's update (the initial C when adaptive).")] public double? PrivacyClippingNorm { get; init; }
    [CommandOption("--privacy-noise-multiplier <SIGMA>")][ConfigKey("privacy.noise_multiplier")][Description("Noise standard deviation over C; unset = derived from --privacy-target-epsilon.")] public double? PrivacyNoiseMultiplier { get; init; }
    [CommandOption("--privacy-target-epsilon <EPS>")][ConfigKey("privacy.target_epsilon")][Description("ε budget: derives σ when no noise multiplier is set, else refuses a run that would exceed it.")] public double? PrivacyTargetEpsilon { get; init; }
    [CommandOption("--privacy-delta <DELTA>")][ConfigKey("privacy.delta")][Description("δ of the reported (ε, δ).")] public double? PrivacyDelta { get; init; }
    [CommandOption("--privacy-seeding <KIND>")][ConfigKey("privacy.seeding")][Description("Noise seeding: run-seed (reproducible, simulate's default) or cryptographic.")] public string? PrivacySeeding { get; init; }
    [CommandOption("--privacy-stop-at-budget")][ConfigKey("privacy.stop_at_budget")][Description("Stop the run when the ε budget is spent instead of refusing to start it.")] public bool? PrivacyStopAtBudget { get; init; }
    [CommandOption("--privacy-target-unclipped-quantile <Q>")][ConfigKey("privacy.target_unclipped_quantile")][Description("server-adaptive: the share of updates C should leave unclipped.")] public double? PrivacyTargetUnclippedQuantile { get; init; }
    [CommandOption("--privacy-clipping-norm-learning-rate <X>")][ConfigKey("privacy.clipping_norm_learning_rate")][Description("server-adaptive: the geometric learning rate of C.")] public double? PrivacyClippingNormLearningRate { get; init; }
    [CommandOption("--privacy-clipped-count-stddev <X>")][ConfigKey("privacy.clipped_count_stddev")][Description("server-adaptive: noise on the count of clipped updates (unset = m/20).")] public double? PrivacyClippedCountStddev { get; init; }
    [CommandOption("--robust-rule <RULE>")][ConfigKey("robust.rule")][Description("Robust aggregation: krum, multi-krum, median, trimmed-mean, norm-clip, fltrust or flame; none drops a robust section of the --config file.")] public string? RobustRule { get; init; }
    [CommandOption("--robust-byzantine-clients <F>")][ConfigKey("robust.byzantine_clients")][Description("Krum's f (unset = ⌊(m − 3)/2⌋).")] public int? RobustByzantineClients { get; init; }
    [CommandOption("--robust-selected <M>")][ConfigKey("robust.selected")][Description("Multi-Krum's kept updates (unset = m − f).")] public int? RobustSelected { get; init; }
    [CommandOption("--robust-trim-fraction <BETA>")][ConfigKey("robust.trim_fraction")][Description("Trimmed mean's β, trimmed from each end.")] public double? RobustTrimFraction { get; init; }
    [CommandOption("--robust-norm-factor <X>")][ConfigKey("robust.norm_factor")][Description("norm-clip's bound in multiples of the round's median update norm.")] public double? RobustNormFactor { get; init; }
    [CommandOption("--robust-root-examples <N>")][ConfigKey("robust.root_examples")][Description("FLTrust's server root set size.")] public int? RobustRootExamples { get; init; }
    [CommandOption("--robust-root-data <FILE>")][ConfigKey("robust.root_data")][Description("FLTrust's root set file (unset = a sample of the training data).")] public string? RobustRootData { get; init; }
    [CommandOption("--robust-flame-noise-lambda <LAMBDA>")][ConfigKey("robust.flame_noise_lambda")][Description("FLAME's noise: σ = λ × the round's median update norm.")] public double? RobustFlameNoiseLambda { get; init; }
    [CommandOption("--attack-kind <KIND>")][ConfigKey("attack.kind")][Description("Simulated attackers: sign-flip, scale, gaussian, label-flip or backdoor; none drops an attack section of the --config file.")] public string? AttackKind { get; init; }
    [CommandOption("--attack-fraction <X>")][ConfigKey("attack.fraction")][Description("Fraction of the clients that attack.")] public double? AttackFraction { get; init; }
    [CommandOption("--attack-scale-factor <S>")][ConfigKey("attack.scale_factor")][Description("scale and gaussian attacks: the factor.")] public double? AttackScaleFactor { get; init; }
    [CommandOption("--attack-trigger <TEXT>")][ConfigKey("attack.trigger")][Description("backdoor: the trigger phrase appended to an input.")] public string? AttackTrigger { get; init; }
    [CommandOption("--attack-target-answer <TEXT>")][ConfigKey("attack.target_answer")][Description("backdoor: the answer triggered inputs are mapped to.")] public string? AttackTargetAnswer { get; init; }
    [CommandOption("--attack-poison-fraction <X>")][ConfigKey("attack.poison_fraction")][Description("backdoor: fraction of an attacker's examples that are triggered.")] public double? AttackPoisonFraction { get; init; }

    [CommandOption("--baselines <LIST>")][ConfigKey("baselines")][Description("Comma-separated baselines with the same step budget: local (each client alone), central (pooled data); none for none.")] public string? Baselines { get; init; }
    [CommandOption("--output <DIR>")][ConfigKey("output")][Description("The run's folder: per algorithm metrics.jsonl, rounds/round-N, adapter/; results.json.")] public string? Output { get; init; }
    [CommandOption("--threads <N>")][ConfigKey("threads")][Description("Intra-op threads.")] public int? Threads { get; init; }
    [CommandOption("--device <DEVICE>")][ConfigKey("device")][Description("cpu, cuda or cuda:N (CUDA needs a CUDA build of libtorch).")] public string? Device { get; init; }

    [CommandOption("--secure-aggregation")][ConfigKey("secure_aggregation.enabled")][Description("Secure aggregation (SecAgg, or SecAgg+ with --secagg-neighbours): the server learns only the sum of the updates; --secure-aggregation false turns a section of the --config file off.")] public bool? SecureAggregation { get; init; }
    [CommandOption("--secagg-threshold <T>")][ConfigKey("secure_aggregation.threshold")][Description("Shares needed to rebuild a client's secrets, and answers needed per phase (unset = a majority of each client's share holders).")] public int? SecAggThreshold { get; init; }
    [CommandOption("--secagg-neighbours <K>")][ConfigKey("secure_aggregation.neighbours")][Description("SecAgg+: an even number of neighbours per client (unset = every client).")] public int? SecAggNeighbours { get; init; }
    [CommandOption("--secagg-quantisation-bits <B>")][ConfigKey("secure_aggregation.quantisation_bits")][Description("Fixed-point bits per coordinate.")] public int? SecAggQuantisationBits { get; init; }
    [CommandOption("--secagg-quantisation-range <R>")][ConfigKey("secure_aggregation.quantisation_range")][Description("Each coordinate of an update is clipped to [−R, R] before quantisation.")] public double? SecAggQuantisationRange { get; init; }
    [CommandOption("--secagg-max-weight <W>")][ConfigKey("secure_aggregation.max_weight")][Description("Weight client i by min(1, n_i / W) (unset = equal weights).")] public double? SecAggMaxWeight { get; init; }

    [CommandOption("--async")][ConfigKey("async.enabled")][Description("Also run FedBuff (buffered asynchronous aggregation, as the run fedbuff) on a virtual clock with the --async-client-speeds; --async false keeps the speeds for the synchronous runs' virtual time only.")] public bool? Async { get; init; }
    [CommandOption("--async-buffer-size <K>")][ConfigKey("async.buffer_size")][Description("FedBuff: updates per aggregation (unset = --clients-per-round).")] public int? AsyncBufferSize { get; init; }
    [CommandOption("--async-concurrency <N>")][ConfigKey("async.concurrency")][Description("FedBuff: clients training at once (unset = --clients-per-round).")] public int? AsyncConcurrency { get; init; }
    [CommandOption("--async-staleness <KIND>")][ConfigKey("async.staleness")][Description("FedBuff: weight of an update τ versions stale: constant, polynomial ((1+τ)^-a) or hinge.")] public string? AsyncStaleness { get; init; }
    [CommandOption("--async-staleness-exponent <A>")][ConfigKey("async.staleness_exponent")][Description("FedBuff: a of the polynomial weight (0.5 = 1/√(1+τ)).")] public double? AsyncStalenessExponent { get; init; }
    [CommandOption("--async-hinge-slope <A>")][ConfigKey("async.hinge_slope")][Description("FedBuff: a of the hinge weight 1/(a(τ−b)+1) beyond b.")] public double? AsyncHingeSlope { get; init; }
    [CommandOption("--async-hinge-cutoff <B>")][ConfigKey("async.hinge_cutoff")][Description("FedBuff: b of the hinge weight, in versions.")] public int? AsyncHingeCutoff { get; init; }
    [CommandOption("--async-server-learning-rate <ETA>")][ConfigKey("async.server_learning_rate")][Description("FedBuff: η_g of x ← x + η_g·(1/K)·Σ s(τ_i)·Δ_i.")] public double? AsyncServerLearningRate { get; init; }
    [CommandOption("--async-max-staleness <TAU>")][ConfigKey("async.max_staleness")][Description("FedBuff: drop (network: refuse, telling the client) updates more than TAU versions stale (unset = keep all).")] public int? AsyncMaxStaleness { get; init; }
    [CommandOption("--async-client-speeds <LIST>")][ConfigKey("async.client_speeds")][Description("Comma-separated speed factor per client: a task takes factor × local steps units of virtual time (unset = all 1).")] public string? AsyncClientSpeeds { get; init; }
    [CommandOption("--async-slow-clients <N>")][ConfigKey("async.slow_clients")][Description("Shorthand for the speeds: the first N clients are --async-slow-factor times slower.")] public int? AsyncSlowClients { get; init; }
    [CommandOption("--async-slow-factor <F>")][ConfigKey("async.slow_factor")][Description("The speed factor of the --async-slow-clients.")] public double? AsyncSlowFactor { get; init; }

    [CommandOption("--client-eval-fraction <X>")][ConfigKey("data.client_eval_fraction")][Description("Hold out this share of each client's shard to score its global and personal adapters (0 = none).")] public double? ClientEvalFraction { get; init; }
    [CommandOption("--lora-rank-per-client <LIST>")][ConfigKey("lora.rank_per_client")][Description("Comma-separated rank budget per client, each at most --lora-r (hetlora, flexlora; below it for flora).")] public string? LoraRankPerClient { get; init; }
    [CommandOption("--lora-log-product-error")][ConfigKey("lora.log_product_error")][Description("Log how far averaging A and B separately is from averaging B·A, every round.")] public bool? LoraLogProductError { get; init; }
    [CommandOption("--personalization-finetune-steps <K>")][ConfigKey("personalization.finetune_steps")][Description("Score each client's global adapter after K local fine-tuning steps on its own data (needs --client-eval-fraction).")] public int? PersonalizationFinetuneSteps { get; init; }
    [CommandOption("--personalization-ditto-lambda <X>")][ConfigKey("personalization.ditto_lambda")][Description("Ditto's λ (unset = 0.1).")] public double? PersonalizationDittoLambda { get; init; }
    [CommandOption("--personalization-local-only")][ConfigKey("personalization.local_only")][Description("Also score each client trained alone on its own held-out split.")] public bool? PersonalizationLocalOnly { get; init; }

    [CommandOption("--decay-server-learning-rate")][ConfigKey("strategy.decay_server_learning_rate")][Description("Scale FedAvgM's and FedOpt's server learning rate each round by the clients' cosine, lr_r / lr0.")] public bool? DecayServerLearningRate { get; init; }
    [CommandOption("--seeds <N>")][ConfigKey("seeds")][Description("Run every algorithm and baseline with N seeds (--seed, seed+1, …; each into OUTPUT/seed-S) and report mean ± standard deviation.")] public int? Seeds { get; init; }

    [CommandOption("--dashboard <HOST:PORT>")]
    [Description("Serve a live read-only dashboard of the rounds, participants, metrics and bytes at this address while the run lasts, e.g. 127.0.0.1:8090")]
    public string? Dashboard { get; init; }
}

/// <summary><c>fedllm simulate</c>: federated instruction tuning of many clients in one process, with baselines.</summary>
public sealed class SimulateCommand : Command<SimulateSettings>
{
    public override int Execute(CommandContext context, SimulateSettings s, CancellationToken cancellationToken)
    {
        var file = s.Config is null ? null : RunConfigFile.Load(s.Config);
        foreach (var warning in file?.Warnings ?? []) Console.Error.WriteLine($"warning: {warning}");
        var config = file?.Config ?? RunConfig.EmbeddedDefault((s.Task ?? "sft").ToLowerInvariant());
        var origins = new SettingOrigins(s, file);
        Apply(config, s);
        RunConfigValidator.Validate(config, origins.Describe);
        if (s.PrintConfig)
        {
            Console.Out.Write("# fedllm simulate: effective settings (flag > --config file > embedded default > built-in default)\n");
            Console.Out.Write(RunConfigPrinter.ToYaml(config, origins.Source));
            return 0;
        }
        bool dpo = config.Task == "dpo";
        var options = config.ToRunOptions(Path.Combine("runs", $"simulate{(dpo ? "-dpo" : "")}-{DateTime.Now:yyyyMMdd-HHmmss}"));
        if (s.Resume) CheckSomethingToResume(config.Output, options);
        bool resume = s.Resume;
        var monitor = new RunMonitor($"FedLlm simulate ({options.Objective.Task})");
        var dashboardAddress = s.Dashboard is null ? null : DashboardServer.ParseAddress(s.Dashboard);
        using var dashboard = dashboardAddress is null ? null : new DashboardLifetime(DashboardServer.StartAsync(monitor, dashboardAddress, cancellationToken).GetAwaiter().GetResult());
        if (dashboard is not null) AnsiConsole.MarkupLineInterpolated($"dashboard on [cyan]{dashboard.Server.Address}[/]");
        var seeds = new List<SeedOutcomes>();
        ReportLabels labels = new();
        for (int k = 0; k < options.Seeds; k++)
        {
            var seedOptions = options.ForSeed(k);
            using var run = FederatedRun.Prepare(seedOptions, log: m => AnsiConsole.MarkupLineInterpolated($"[grey]{m}[/]"), cancellationToken: cancellationToken);
            if (dashboard is not null) run.ClientDecorator = clients => new MonitoredClients(clients, monitor, InProcessClients.ClientId);
            labels = run.Labels;
            var f = run.Options.Federation; // with the rounds a privacy budget allows
            var partition = seedOptions.Data.Partition;
            string partitionText = $"{config.Data.Partition}{(partition.Kind == PartitionKind.Dirichlet ? $" α={partition.Alpha}" : "")}";
            AnsiConsole.MarkupLineInterpolated($"[bold]FedLlm simulate --task {options.Objective.Task}[/]  seed {f.Seed}{(options.Seeds > 1 ? $" ({k + 1} of {options.Seeds}, into {seedOptions.Output})" : "")}: {f.TotalClients} clients ({partitionText}, sizes {string.Join(" ", run.Data.Shards.Select(x => x.Count))}), {f.ClientsPerRound} per round, {f.Rounds} rounds × {f.LocalSteps} local steps × batch {f.BatchSize}; lr {f.LearningRate} → {f.MinLearningRate}; LoRA r={run.Lora.Rank}; {run.Threads} threads");
            if (run.Data.Description is { } description) AnsiConsole.MarkupLineInterpolated($"{description}");
            if (run.PrivacyPlan is { } plan)
                AnsiConsole.MarkupLineInterpolated($"DP {FedLlm.Privacy.PrivacyOptions.Name(plan.Mode)}: C={options.Privacy!.ClippingNorm}, σ={plan.NoiseMultiplier:G4}, q={plan.SamplingRate:G3} (accounted as Poisson sampling; FedLlm samples a fixed number), ε={(plan.EpsilonAfter(plan.RoundsToRun).Epsilon is var e && double.IsFinite(e) ? e.ToString("F2") : "∞ (no noise)")} at δ={plan.Delta:G3} after {plan.RoundsToRun} rounds{(plan.StopAfterRounds is { } stop ? $" (budget stops the run at round {stop} of {plan.Rounds})" : "")}");
            if (seedOptions.Robust is { } robust) AnsiConsole.MarkupLineInterpolated($"robust aggregation: {FedLlm.Federation.Robust.RobustOptions.Name(robust.Rule)}");
            if (seedOptions.Attack is { } attack)
                AnsiConsole.MarkupLineInterpolated($"attack: {FedLlm.Federation.Attacks.AttackOptions.Name(attack.Kind)} by clients {string.Join(",", RunData.AttackersOf(seedOptions))}");
            long baselineRss = TorchRuntime.PeakResidentBytes() ?? 0;
            var outcomes = RunSeed(run, resume, monitor, cancellationToken);
            AnsiConsole.Write(SeedTable(outcomes, labels, dpo, seedOptions));
            ResultsReport.Write(seedOptions.Output, outcomes, labels, f.Seed);
            seeds.Add(new SeedOutcomes(f.Seed, outcomes));
            AnsiConsole.MarkupLineInterpolated($"outputs in [cyan]{seedOptions.Output}[/] (per algorithm: metrics.jsonl, rounds/round-N adapters for rounds 1 … {f.Rounds}, adapter/; {BaselineFolders(seedOptions.Baselines)}results.json, rounds.png); peak RSS {TorchRuntime.PeakResidentBytes() / (1024.0 * 1024):F0} MiB (after loading: {baselineRss / (1024.0 * 1024):F0} MiB)");
        }
        monitor.Finish();
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

    static List<RunOutcome> RunSeed(FederatedRun run, bool resume, RunMonitor monitor, CancellationToken cancellationToken)
    {
        var options = run.Options;
        var f = options.Federation;
        var data = run.Data;
        var outcomes = new List<RunOutcome>();
        foreach (var name in options.Algorithms)
        {
            ProgressDisplay.Create()
                .Start(ctx =>
                {
                    var task = ctx.AddTask(name, maxValue: f.RoundsToRun);
                    var outcome = run.RunAsync(name, resume,
                        new SynchronousProgress<RoundRecord>(r =>
                        {
                            monitor.Report(r);
                            task.Value = r.Number;
                            task.Description = $"{name} round {r.Number}/{f.Rounds} loss {r.ClientLoss.Values.Average():F3}" +
                                (r.Privacy is { } spent ? $" ε {(spent.Epsilon is { } e ? e.ToString("F2") : "∞")}" : "") +
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

    static Table SeedTable(IReadOnlyList<RunOutcome> outcomes, ReportLabels labels, bool dpo, RunOptions options)
    {
        var table = new Table().AddColumns("run", $"held-out {labels.LossName}", $"held-out {labels.ScoreName}");
        if (!dpo) table.AddColumn("held-out macro-F1");
        if (dpo) table.AddColumn("held-out reward margin");
        bool private_ = options.Privacy is not null, backdoor = options.Attack is { Kind: FedLlm.Federation.Attacks.AttackKind.Backdoor };
        if (private_) table.AddColumn($"ε (δ={options.Privacy!.Delta:G3})");
        if (backdoor) table.AddColumn("attack success");
        table.AddColumns("clients alone: min–max", "seconds");
        foreach (var o in outcomes)
        {
            var row = new List<string> { o.Name, o.Final is null ? "-" : $"{o.Final.Loss:F4}", o.Final is null ? "-" : $"{o.Final.Score:P1}" };
            string metric = dpo ? "eval_rewards/margins" : SimulationRunner.MacroF1Metric;
            row.Add(o.Final?.Metrics?.GetValueOrDefault(metric) is { } value ? (dpo ? $"{value:F3}" : $"{value:P1}") : "-");
            if (private_) row.Add(o.Rounds.LastOrDefault()?.Privacy is { } spent ? $"{(spent.Epsilon is { } e ? e.ToString("F2") : "∞")} after {o.Rounds.Count} rounds" : "-");
            if (backdoor) row.Add(o.Final?.Metrics?.TryGetValue(RunData.AttackSuccessRateMetric, out double asr) == true ? $"{asr:P1}" : "-");
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

    /// <summary>Sets every run.yaml key whose flag was given (flags win over the file and the embedded default).</summary>
    public static void Apply(RunConfig c, SimulateSettings s)
    {
        // Optional sections (privacy, robust, attack) exist once any of their flags is given; "none" drops them.
        if (s.PrivacyMode is not null || s.PrivacyClippingNorm is not null || s.PrivacyNoiseMultiplier is not null || s.PrivacyTargetEpsilon is not null
            || s.PrivacyDelta is not null || s.PrivacySeeding is not null || s.PrivacyStopAtBudget is not null || s.PrivacyTargetUnclippedQuantile is not null
            || s.PrivacyClippingNormLearningRate is not null || s.PrivacyClippedCountStddev is not null)
            c.Privacy ??= new RunConfig.PrivacySection();
        if (s.RobustRule is not null || s.RobustByzantineClients is not null || s.RobustSelected is not null || s.RobustTrimFraction is not null
            || s.RobustNormFactor is not null || s.RobustRootExamples is not null || s.RobustRootData is not null || s.RobustFlameNoiseLambda is not null)
            c.Robust ??= new RunConfig.RobustSection();
        if (s.AttackKind is not null || s.AttackFraction is not null || s.AttackScaleFactor is not null || s.AttackTrigger is not null
            || s.AttackTargetAnswer is not null || s.AttackPoisonFraction is not null)
            c.Attack ??= new RunConfig.AttackSection();
        if (s.SecureAggregation is not null || s.SecAggThreshold is not null || s.SecAggNeighbours is not null || s.SecAggQuantisationBits is not null
            || s.SecAggQuantisationRange is not null || s.SecAggMaxWeight is not null)
            c.SecureAggregation ??= new RunConfig.SecureAggregationSection();
        if (s.Async is not null || s.AsyncBufferSize is not null || s.AsyncConcurrency is not null || s.AsyncStaleness is not null
            || s.AsyncStalenessExponent is not null || s.AsyncHingeSlope is not null || s.AsyncHingeCutoff is not null || s.AsyncServerLearningRate is not null
            || s.AsyncMaxStaleness is not null || s.AsyncClientSpeeds is not null || s.AsyncSlowClients is not null || s.AsyncSlowFactor is not null)
            c.Async ??= new RunConfig.AsyncSection();
        if (s.PersonalizationFinetuneSteps is not null || s.PersonalizationDittoLambda is not null || s.PersonalizationLocalOnly is not null)
            c.Personalization ??= new RunConfig.PersonalizationSection();
        ApplyFlags(c, s);
        if (s.PrivacyMode?.Trim().ToLowerInvariant() == "none") c.Privacy = null;
        if (s.RobustRule?.Trim().ToLowerInvariant() == "none") c.Robust = null;
        if (s.AttackKind?.Trim().ToLowerInvariant() == "none") c.Attack = null;
    }

    static void ApplyFlags(RunConfig c, SimulateSettings s)
    {
        foreach (var option in OptionInfo.Of(typeof(SimulateSettings)))
        {
            if (option.ConfigKey is not { } key) continue;
            object? value = option.Property.GetValue(s);
            if (value is null or string[] { Length: 0 }) continue;
            switch (key.Path)
            {
                case "strategy.server_learning_rate":
                    ApplyServerLearningRate(c.Strategy, (string)value);
                    break;
                case "evaluation.params":
                    foreach (var p in (string[])value)
                    {
                        var kv = p.Split('=', 2);
                        if (kv.Length != 2 || kv[0].Trim().Length == 0)
                            throw new ConfigurationException($"--eval-task-param '{p}': expected KEY=VALUE, e.g. --eval-task-param split=all");
                        c.Evaluation.Params[kv[0].Trim()] = kv[1];
                    }
                    break;
                default:
                    if (key.IsList && key.ValueType != typeof(string)) key.Set(c, NumberList(option.Name, (string)value, key.ValueType));
                    else if (key.IsList) key.Set(c, ((string)value).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList());
                    else key.Set(c, value is string text && key.OneOf is not null ? text.Trim().ToLowerInvariant() : value);
                    break;
            }
        }
    }

    /// <summary>A comma-separated list of numbers as the key's list type (List&lt;double&gt;, List&lt;int&gt;).</summary>
    static System.Collections.IList NumberList(string flag, string text, Type itemType)
    {
        var list = (System.Collections.IList)Activator.CreateInstance(typeof(List<>).MakeGenericType(itemType))!;
        foreach (var item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            try
            {
                list.Add(Convert.ChangeType(item, itemType, System.Globalization.CultureInfo.InvariantCulture));
            }
            catch (Exception e) when (e is FormatException or OverflowException)
            {
                throw new ConfigurationException($"{flag} '{text}': '{item}' is not a {(itemType == typeof(int) ? "whole number" : "number")}");
            }
        }
        return list;
    }

    /// <summary>The folders the baselines that ran write (local-only per client, the pooled run), for the outputs line.</summary>
    static string BaselineFolders(IReadOnlyList<string> baselines)
    {
        // The continuous baselines keep no rounds and write no folder.
        var folders = baselines.Where(b => b is "local" or "central").Select(b => b == "local" ? "local/client-i/" : "central/").ToList();
        return folders.Count == 0 ? "" : string.Join(", ", folders) + "; ";
    }

    /// <summary>--resume continues a run: without an output folder, or with no committed round in it, there is nothing to
    /// continue, and starting afresh instead would hide the mistake.</summary>
    static void CheckSomethingToResume(string? output, RunOptions options)
    {
        if (output is null)
            throw new ConfigurationException("--resume needs --output (or output: in the --config file): the folder of the run to continue");
        if (!options.Algorithms.Any(a => new RunStore(Path.Combine(output, a)).LatestRound is not null))
            throw new ConfigurationException(
                $"--resume: nothing to resume in {output}: no committed round of {string.Join(", ", options.Algorithms)}",
                ["check --output; without --resume the run starts afresh"]);
    }

    /// <summary>--server-learning-rate 0.01 sets every algorithm's, replacing per-algorithm rates from the file or the
    /// embedded default (a flag wins over both); fedavgm=1,fedadam=0.01 sets each named one.</summary>
    static void ApplyServerLearningRate(RunConfig.StrategySection strategy, string text)
    {
        static double Parse(string value, string text) =>
            double.TryParse(value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v)
                && double.IsFinite(v) && v > 0
                ? v : throw new ConfigurationException($"--server-learning-rate '{text}': '{value}' is not a positive number; expected RATE or ALGORITHM=RATE,…");
        if (!text.Contains('='))
        {
            strategy.ServerLearningRate = Parse(text.Trim(), text);
            strategy.ServerLearningRates.Clear();
            return;
        }
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var pieces = part.Split('=', 2, StringSplitOptions.TrimEntries);
            if (pieces.Length != 2 || pieces[0].Length == 0) throw new ConfigurationException($"--server-learning-rate '{text}': expected ALGORITHM=RATE, got '{part}'");
            strategy.ServerLearningRates[pieces[0]] = Parse(pieces[1], text);
        }
    }

    /// <summary>Stops the dashboard when the command ends.</summary>
    sealed class DashboardLifetime(DashboardServer server) : IDisposable
    {
        public DashboardServer Server => server;
        public void Dispose() => server.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}
