using FedLlm.Data.Partitioning;
using FedLlm.Evaluation;
using FedLlm.Federation;
using FedLlm.Federation.Async;
using FedLlm.Federation.Attacks;
using FedLlm.Federation.LowRank;
using FedLlm.Federation.Robust;
using FedLlm.Federation.SecureAggregation;
using FedLlm.Privacy;
using FedLlm.Peft;
using FedLlm.Quantization;

namespace FedLlm.Runs;

/// <summary>
/// Everything that determines a federated run, typed and validated in one place: the model, the data and how it is
/// split, the federation, the algorithms, LoRA, the local objective, evaluation and output. <c>fedllm simulate</c>,
/// <c>fedllm server</c> and embedding code all build one (run.yaml and server.yaml map onto it once, in
/// <see cref="RunConfig.ToRunOptions"/>) and hand it to <see cref="FederatedRun"/>.
/// </summary>
public sealed record RunOptions
{
    /// <summary>What clients train for: instruction tuning (default) or DPO.</summary>
    public LocalObjective Objective { get; init; } = new();

    /// <summary>Hugging Face checkpoint folder; null = the embedded default model (built on first use).</summary>
    public string? ModelPath { get; init; }

    /// <summary>How the frozen base is stored: fp32, bf16, int8 or nf4.</summary>
    public BaseWeights BaseWeights { get; init; } = BaseWeights.Fp32;

    /// <summary>Recompute each decoder layer's activations during backward (less memory, one more forward).</summary>
    public bool ActivationCheckpointing { get; init; }

    /// <summary>cpu, cuda or cuda:N.</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Intra-op threads; null = all cores.</summary>
    public int? Threads { get; init; }

    /// <summary>The training and held-out data and how it is split among clients.</summary>
    public RunDataOptions Data { get; init; } = new();

    /// <summary>Rounds, clients, local steps, learning-rate schedule, seed.</summary>
    public FederationOptions Federation { get; init; } = new();

    /// <summary>The algorithms to run (each from the same start), by registry name.</summary>
    public IReadOnlyList<string> Algorithms { get; init; } = ["fedavg"];

    /// <summary>Server-side hyperparameters shared by every algorithm (μ, β, τ …), with the papers' defaults.</summary>
    public StrategyOptions Strategy { get; init; } = new();

    /// <summary>Per-algorithm server learning rates that win over <see cref="StrategyOptions.ServerLearningRate"/>
    /// (FedAvgM's η_s and FedOpt's η live on different scales).</summary>
    public IReadOnlyDictionary<string, double> ServerLearningRates { get; init; } = new Dictionary<string, double>();

    /// <summary>The adapter's layout.</summary>
    public LoraOptions Lora { get; init; } = new();

    /// <summary>DPO: a frozen PEFT adapter that is both the reference policy and the starting point; null = the base
    /// model with adapters off is the reference and training starts from a fresh adapter.</summary>
    public string? ReferenceAdapter { get; init; }

    /// <summary>A benchmark task scored on the global adapter every few rounds, or null.</summary>
    public RoundTaskOptions? RoundTask { get; init; }

    /// <summary>Federated evaluation: every this many rounds (and after the last) the round's clients score the new
    /// global adapter on their own data (<see cref="EvaluateOnClients"/>); 0 = never.</summary>
    public int FederatedEvaluateEvery { get; init; }

    /// <summary>Baselines run beside the federated algorithms with the same step budget: "local", "central".</summary>
    public IReadOnlyList<string> Baselines { get; init; } = [];

    /// <summary>Client-level differential privacy (YAML <c>privacy:</c>), or null for none.</summary>
    public PrivacyOptions? Privacy { get; init; }

    /// <summary>Byzantine-robust aggregation in place of the algorithm's mean (YAML <c>robust:</c>), or null.</summary>
    public RobustOptions? Robust { get; init; }

    /// <summary>Simulated attackers among the clients (YAML <c>attack:</c>, simulation only), or null.</summary>
    public AttackOptions? Attack { get; init; }

    /// <summary>Secure aggregation of the updates (YAML <c>secure_aggregation:</c>; in simulation and over the network), or null.</summary>
    public SecureAggregationOptions? SecureAggregation { get; init; }
    /// <summary>Buffered asynchronous aggregation and simulated client speeds (YAML <c>async:</c>), or null: with it, the
    /// synchronous algorithms' rounds get virtual times from the same speeds, and "fedbuff" in <see cref="Algorithms"/>
    /// runs the asynchronous loop (<see cref="BufferedAsyncServer"/>).</summary>
    public AsyncOptions? Async { get; init; }

    /// <summary>Per-client evaluation of personalisation (YAML <c>personalization:</c>), or null for none.</summary>
    public PersonalizationOptions? Personalization { get; init; }

    /// <summary>Log, every round, how far averaging LoRA's A and B separately is from averaging B·A
    /// (YAML <c>lora.log_product_error</c>).</summary>
    public bool LogLoraProductError { get; init; }

    /// <summary>The run's folder (per algorithm: metrics.jsonl, rounds/round-N, adapter/; results.json, rounds.png).</summary>
    public string Output { get; init; } = Path.Combine("runs", "federated");

    /// <summary>How many seeds to run everything with: Federation.Seed, Seed + 1, …; each into Output/seed-{seed}
    /// when more than one.</summary>
    public int Seeds { get; init; } = 1;

    /// <summary>The known baselines: "local" and "central" train with the federated clients' recipe (1-client
    /// federations); the "-continuous" ones with one AdamW and a per-step cosine.</summary>
    public static readonly IReadOnlyList<string> KnownBaselines = ["local", "central", "local-continuous", "central-continuous"];

    /// <summary>The options of the <paramref name="index"/>-th seed (0-based): its seed, and with more than one seed its
    /// own output folder seed-{seed}.</summary>
    public RunOptions ForSeed(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        long seed = Federation.Seed + index;
        return this with
        {
            Federation = Federation with { Seed = seed },
            RoundTask = RoundTask is null ? null : RoundTask with { Run = RoundTask.Run with { Seed = seed } },
            Output = Seeds > 1 ? Path.Combine(Output, $"seed-{seed}") : Output,
            Seeds = 1,
        };
    }

    /// <summary>The strategy options of <paramref name="algorithm"/>: the shared ones with its own server learning rate
    /// and N = all clients.</summary>
    public StrategyOptions StrategyOptionsFor(string algorithm) => Strategy with
    {
        ServerLearningRate = ServerLearningRates.TryGetValue(algorithm, out double own) ? own : Strategy.ServerLearningRate,
        TotalClients = Federation.TotalClients,
        ClientPeakLearningRate = Federation.LearningRate,
    };

    /// <summary>Checks every part and throws one <see cref="ArgumentException"/> listing all failures, before any work.</summary>
    /// <param name="algorithms">The registry the algorithm names must be in.</param>
    public void Validate(AlgorithmRegistry algorithms)
    {
        ArgumentNullException.ThrowIfNull(algorithms);
        var failures = new List<string>();
        void Check(Action validate)
        {
            try
            {
                validate();
            }
            catch (ArgumentException e)
            {
                failures.Add(e.Message);
            }
        }
        Check(Objective.Validate);
        Check(Federation.Validate);
        Check(Lora.Validate);
        Check(Data.Validate);
        if (Algorithms.Count == 0) failures.Add("no algorithm to run");
        foreach (var name in Algorithms.Where(a => a != BufferedAsyncServer.AlgorithmName))
            if (!algorithms.Contains(name)) failures.Add($"unknown algorithm '{name}' (known: {string.Join(", ", algorithms.Names)})");
        foreach (var name in ServerLearningRates.Keys)
            if (!algorithms.Contains(name)) failures.Add($"server learning rate for unknown algorithm '{name}' (known: {string.Join(", ", algorithms.Names)})");
        foreach (var name in Algorithms.Where(algorithms.Contains)) Check(() => StrategyOptionsFor(name).Validate());
        foreach (var name in Baselines)
            if (!KnownBaselines.Contains(name)) failures.Add($"unknown baseline '{name}' (known: {string.Join(", ", KnownBaselines)})");
        if (ReferenceAdapter is not null && !Objective.IsDpo) failures.Add("a reference adapter is only used with the dpo task");
        if (FederatedEvaluateEvery < 0) failures.Add($"federated evaluation every {FederatedEvaluateEvery} rounds: must be ≥ 0 (0 = never)");
        if (Seeds <= 0) failures.Add($"seeds must be positive, got {Seeds}");
        if (Threads is <= 0) failures.Add($"threads must be positive, got {Threads}");
        if (Federation.ClientsPerRound > Federation.TotalClients)
            failures.Add($"clients per round ({Federation.ClientsPerRound}) exceeds the number of clients ({Federation.TotalClients})");
        if (Privacy is not null) failures.AddRange(Privacy.Failures(Federation));
        if (Robust is not null) failures.AddRange(Robust.Failures(Federation));
        if (Attack is not null) failures.AddRange(Attack.Failures(Federation));
        // DP of a robust aggregate needs the rule's own sensitivity analysis; only local DP (noise before the server
        // sees anything) composes with a robust rule as post-processing.
        if (Privacy is { Mode: not PrivacyMode.Local } && Robust is not null)
            failures.Add($"privacy.mode {PrivacyOptions.Name(Privacy.Mode)} does not compose with robust aggregation (no combined guarantee); use privacy.mode local or drop robust");
        if (Attack is { PoisonsData: true } && Objective.IsDpo)
            failures.Add($"attack.kind {AttackOptions.Name(Attack.Kind)} poisons instruction data; the dpo task supports sign-flip, scale and gaussian");
        if (Robust is { Rule: RobustRule.FlTrust } && Objective.IsDpo)
            failures.Add("robust.rule fltrust trains the server's root set with instruction tuning; the dpo task supports the other rules");
        if (SecureAggregation is not null) failures.AddRange(SecureAggregationFailures(algorithms));
        if (Personalization is not null) failures.AddRange(Personalization.Failures(this));
        failures.AddRange(AsyncFailures());
        if (Strategy.ClientRanks.Count > 0 && Strategy.ClientRanks.Count != Federation.TotalClients)
            failures.Add($"lora.rank_per_client lists {Strategy.ClientRanks.Count} ranks for {Federation.TotalClients} clients; give one per client");
        if (Strategy.ClientRanks.Count > 0 && Algorithms.Any(a => a is not ("hetlora" or "flexlora" or Flora.AlgorithmName)))
            failures.Add($"lora.rank_per_client is used by hetlora, flexlora and flora; {string.Join(", ", Algorithms.Where(a => a is not ("hetlora" or "flexlora" or Flora.AlgorithmName)))} train every client at lora.r");
        if (Algorithms.Contains(Flora.AlgorithmName)) failures.AddRange(FloraFailures());
        if (Strategy.ClientRanks.Count > 0 && Strategy.ClientRanks.Max() > Lora.Rank)
            failures.Add($"lora.rank_per_client: rank {Strategy.ClientRanks.Max()} exceeds the global adapter's rank lora.r = {Lora.Rank}");
        if (failures.Count > 0) throw new ArgumentException(string.Join("; ", failures.Select(f => f.Replace(" (Parameter '", " ('"))));
    }

    /// <summary>The async: section's own settings, and what FedBuff's loop does not run: anything built on synchronous
    /// rounds of one global (DP accounting, robust rules, attacks, secure aggregation, per-client evaluation, client hooks).</summary>
    IReadOnlyList<string> AsyncFailures()
    {
        var failures = new List<string>(Async?.Failures(Federation) ?? []);
        if (!Algorithms.Contains(BufferedAsyncServer.AlgorithmName)) return failures;
        var (with, name) = (" with buffered asynchronous aggregation (async.enabled / fedbuff)", BufferedAsyncServer.AlgorithmName);
        if (Privacy is not null) failures.Add($"privacy{with}: the accountant counts synchronous rounds; drop one of them");
        if (Robust is not null) failures.Add($"robust{with}: the robust rules compare the updates of one round; drop one of them");
        if (Attack is not null) failures.Add($"attack{with} is not simulated; drop one of them");
        if (SecureAggregation is not null) failures.Add($"secure_aggregation{with}: masks cancel only within a round; drop one of them");
        if (Personalization is not null) failures.Add($"personalization{with} is not supported; drop one of them");
        if (FederatedEvaluateEvery > 0) failures.Add($"federation.federated_evaluate_every{with} is not supported (no round of clients to ask)");
        if (Strategy.ClientRanks.Count > 0 && Algorithms.All(a => a == name)) failures.Add($"lora.rank_per_client{with} is not supported");
        return failures;
    }

    /// <summary>What FLoRA cannot run with: a layout without room for both parts, and anything that changes or hides the
    /// individual updates' frozen part (it must arrive as sent) or carries optimizer moments into the next round's fresh
    /// module.</summary>
    IReadOnlyList<string> FloraFailures()
    {
        var failures = new List<string>();
        const string with = "with flora";
        if (Strategy.ClientRanks.Count > 0 && Strategy.ClientRanks.Max() >= Lora.Rank)
            failures.Add($"lora.rank_per_client {with}: the largest rank {Strategy.ClientRanks.Max()} leaves no component of lora.r = {Lora.Rank} for the accumulated update; raise lora.r (exact when lora.r − {Strategy.ClientRanks.Max()} ≥ every module's smaller dimension)");
        if (Strategy.ClientRanks.Count == 0 && Lora.Rank < 2)
            failures.Add($"lora.r {with} must be at least 2 (half for the accumulated update, half for the round's fresh module)");
        if (Privacy is not null) failures.Add($"privacy {with}: clipping and noise would change the frozen accumulated update the server checks; drop one of them");
        if (Robust is not null) failures.Add($"robust {with}: the robust rules replace the stacking of the clients' modules; drop one of them");
        if (Attack is not null) failures.Add($"attack {with} is not simulated; drop one of them");
        if (SecureAggregation is not null) failures.Add($"secure_aggregation {with}: stacking needs each client's factors, which the secure sum hides; drop one of them");
        if (Federation.KeepClientOptimizerState)
            failures.Add($"federation.keep_optimizer_state {with}: every round trains a fresh module, which the previous round's moments do not belong to; drop one of them");
        return failures;
    }

    /// <summary>Secure aggregation's own settings and what it cannot be combined with: anything that must see individual
    /// updates (robust rules, server-side DP clipping, per-client tensor sets) and weighted sums under DP.</summary>
    IReadOnlyList<string> SecureAggregationFailures(AlgorithmRegistry algorithms)
    {
        var failures = new List<string>(SecureAggregation!.Failures(Federation));
        if (Robust is not null) failures.Add("secure_aggregation hides the individual updates that robust aggregation inspects; drop one of them");
        if (Privacy is { Mode: PrivacyMode.ServerFixed or PrivacyMode.ServerAdaptive })
            failures.Add($"secure_aggregation with privacy.mode {PrivacyOptions.Name(Privacy.Mode)}: the server cannot clip updates it never sees; use privacy.mode client-fixed (clients clip, the server adds noise to the secure sum) or local");
        if (Privacy is { Mode: PrivacyMode.ClientFixed } && SecureAggregation.MaxWeight is not null)
            failures.Add("secure_aggregation.max_weight weights the sum, and DP's sensitivity needs equal weights; leave max_weight out with privacy");
        foreach (var name in Algorithms.Where(algorithms.Contains))
        {
            var strategy = algorithms.Create(name, StrategyOptionsFor(name));
            try
            {
                var instructions = strategy.ConfigureTrain(0, Federation.LearningRate);
                if (instructions.ReturnedTensorSets.Count > 0)
                    failures.Add($"secure_aggregation cannot carry {name}'s per-client tensor sets ({string.Join(", ", instructions.ReturnedTensorSets)})");
                instructions.DisposeTensors();
            }
            finally
            {
                (strategy as IDisposable)?.Dispose();
            }
        }
        return failures;
    }
}

/// <summary>The data of a run.</summary>
public sealed record RunDataOptions
{
    /// <summary>Training data (JSON, JSONL, .jsonl.gz or Parquet); null = the embedded default's.</summary>
    public string? TrainPath { get; init; }

    /// <summary>Held-out data scored on the global adapter; null = the embedded default's (when the model is too), else none.</summary>
    public string? EvalPath { get; init; }

    /// <summary>Score only the first N held-out examples.</summary>
    public int? EvalLimit { get; init; }

    /// <summary>Prompt template of instruction data: alpaca, vicuna, llama-3 …</summary>
    public string Template { get; init; } = "alpaca";

    /// <summary>The data set's schema (alpaca; ultrafeedback, hh-rlhf, generic-preference for DPO); null = the task's usual one.</summary>
    public string? Dataset { get; init; }

    /// <summary>How the training data is split among the clients (over the label: the response, or DPO's chosen answer).</summary>
    public PartitionOptions Partition { get; init; } = new() { Kind = PartitionKind.Dirichlet, Alpha = 0.5 };

    /// <summary>Skip malformed records (and count them) instead of failing.</summary>
    public bool SkipBad { get; init; }

    /// <summary>The share of each client's shard held out for evaluating that client's global and personal adapters
    /// (YAML <c>data.client_eval_fraction</c>); 0 = none.</summary>
    public double ClientEvalFraction { get; init; }

    /// <summary>Throws on a limit that is not positive.</summary>
    public void Validate()
    {
        if (!(ClientEvalFraction >= 0 && ClientEvalFraction < 1))
            throw new ArgumentException($"data.client_eval_fraction must be in [0, 1), got {ClientEvalFraction}");
        if (EvalLimit is <= 0) throw new ArgumentException($"the held-out limit must be positive, got {EvalLimit}");
        if (Partition.Alpha is <= 0 || double.IsNaN(Partition.Alpha) || double.IsInfinity(Partition.Alpha))
            throw new ArgumentException($"the partition's α must be finite and positive, got {Partition.Alpha}");
    }
}

/// <summary>A benchmark task of <c>fedllm eval</c> scored on the global adapter every <see cref="Every"/> rounds.</summary>
public sealed record RoundTaskOptions(EvaluationTaskSpec Spec, EvaluationRunOptions Run, int Every)
{
    /// <summary>Builds the round hook; a bad task name, data path or parameter fails here, before training.</summary>
    public RoundTaskEvaluation Create() => new(EvaluationTaskRegistry.Create(Spec), Run, Every);
}
