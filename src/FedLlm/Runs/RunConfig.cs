using FedLlm.Configuration;
using FedLlm.Evaluation;
using FedLlm.Federation;
using FedLlm.Federation.Strategies;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace FedLlm.Runs;

/// <summary>
/// A simulated federated run as written in run.yaml (snake_case keys). Every section is optional; defaults are
/// OpenFedLLM's (see <see cref="FederationOptions"/>), except where the embedded default needs its own.
/// </summary>
public sealed class RunConfig
{
    /// <summary>sft (instruction tuning, the default) or dpo (preference alignment with DPO).</summary>
    [OneOf("sft", "dpo")]
    public string Task { get; set; } = "sft";

    /// <summary>model: the base checkpoint and how its frozen weights are stored.</summary>
    public ModelSection Model { get; set; } = new();

    /// <summary>data: the training file, its schema and template, the held-out file, and how the data is split over
    /// clients.</summary>
    public DataSection Data { get; set; } = new();

    /// <summary>federation: rounds, clients, local steps, batch size, learning-rate schedule and seed.</summary>
    public FederationSection Federation { get; set; } = new();

    /// <summary>strategy: the algorithms compared and their server-side hyperparameters.</summary>
    public StrategySection Strategy { get; set; } = new();

    /// <summary>lora: rank, alpha, dropout and target modules of the adapter.</summary>
    public LoraSection Lora { get; set; } = new();

    /// <summary>dpo: β and the reference adapter, read when the task is dpo.</summary>
    public DpoSection Dpo { get; set; } = new();

    /// <summary>evaluation: an optional benchmark task scored on the global adapter every few rounds.</summary>
    public EvaluationSection Evaluation { get; set; } = new();

    /// <summary>Client-level differential privacy; absent = none.</summary>
    public PrivacySection? Privacy { get; set; }

    /// <summary>Byzantine-robust aggregation; absent = the algorithm's own mean.</summary>
    public RobustSection? Robust { get; set; }

    /// <summary>Simulated attackers (simulate only); absent = none.</summary>
    public AttackSection? Attack { get; set; }

    /// <summary>Secure aggregation of the clients' updates (in simulate and on a server); absent = none.</summary>
    public SecureAggregationSection? SecureAggregation { get; set; }

    /// <summary>Buffered asynchronous aggregation (FedBuff): in simulate with simulated client speeds, on a server over
    /// real clients (server.yaml's async:); absent = none.</summary>
    public AsyncSection? Async { get; set; }

    /// <summary>Per-client evaluation of personalisation (in simulate; over the network on the clients, without
    /// finetune_steps and local_only); absent = none.</summary>
    public PersonalizationSection? Personalization { get; set; }

    /// <summary>Runs beside the federated ones, with the same step budget: "local" (each client alone) and "central"
    /// (pooled data) with the federated clients' recipe; "local-continuous", "central-continuous" with one continuous AdamW.</summary>
    [OneOf("local", "central", "local-continuous", "central-continuous", "none", Aliases = ["centralized", "centralised"])]
    public List<string> Baselines { get; set; } = new();

    /// <summary>Run every algorithm and baseline with this many seeds (federation.seed, seed + 1, …) and report mean ±
    /// standard deviation.</summary>
    public int Seeds { get; set; } = 1;

    /// <summary>The run folder (checkpoints, metrics, results.json, charts); null = the command's default
    /// folder.</summary>
    public string? Output { get; set; }

    /// <summary>Intra-op threads for libtorch; null = all cores.</summary>
    [Check(ValueRule.Positive)] public int? Threads { get; set; }

    /// <summary>cpu, cuda or cuda:N, the device training and evaluation run on.</summary>
    [OneOf("cpu", "cuda", OpenPrefix = "cuda:")]
    public string Device { get; set; } = "cpu";

    /// <summary>model: the base checkpoint and its storage.</summary>
    public sealed class ModelSection
    {
        /// <summary>Checkpoint folder; null = the embedded default.</summary>
        public string? Path { get; set; }

        /// <summary>How the frozen base is stored: fp32, bf16, int8 or nf4 (see Quantization.BasePrecision).</summary>
        [OneOf("fp32", "bf16", "int8", "nf4", Aliases = ["float32", "bfloat16"])]
        public string BaseDtype { get; set; } = "fp32";

        /// <summary>Recompute each decoder layer's activations during backward.</summary>
        public bool ActivationCheckpointing { get; set; }
    }

    /// <summary>data: where the examples come from and how they are split over the clients.</summary>
    public sealed class DataSection
    {
        /// <summary>The training data file (SFT examples or preference pairs, in the schema of <see cref="Dataset"/>);
        /// null = the embedded default data.</summary>
        public string? Path { get; set; }
        /// <summary>Held-out data (YAML eval_data; eval_path is its old name).</summary>
        [YamlMember(Alias = "eval_data")]
        public string? EvalPath { get; set; }

        /// <summary>Score at most this many held-out examples; null = all.</summary>
        [Check(ValueRule.Positive)] public int? EvalLimit { get; set; }

        /// <summary>Prompt template the examples are rendered with: alpaca, vicuna, chatml or llama-3.</summary>
        [OneOf("alpaca", "vicuna", "chatml", "llama-3", Aliases = ["llama3", "llama_3"])]
        public string Template { get; set; } = "alpaca";

        /// <summary>The data set's schema (alpaca, ultrafeedback, hh-rlhf, generic-preference…); null = alpaca for sft,
        /// generic-preference ({prompt, chosen, rejected}) for dpo.</summary>
        [OneOf("alpaca", "generic-preference", "ultrafeedback", "hh-rlhf")]
        public string? Dataset { get; set; }

        /// <summary>iid, dirichlet, shards or quantity; iid or dirichlet (over the label: the response text unless a column is named).</summary>
        [OneOf("iid", "dirichlet", "shards", "quantity", Aliases = ["dir", "shard", "pathological", "quantity-skew", "quantityskew"])]
        public string Partition { get; set; } = "dirichlet";

        /// <summary>α of the Dirichlet partition: small values give each client few labels, large ones approach iid
        /// (0.5 by default).</summary>
        [Check(ValueRule.Positive)] public double Alpha { get; set; } = 0.5;

        /// <summary>True to drop malformed records (counted and reported) instead of refusing the file.</summary>
        public bool SkipBad { get; set; }

        /// <summary>The share of each client's shard held out to score that client's adapters; 0 = none.</summary>
        public double ClientEvalFraction { get; set; }
    }

    /// <remarks>Keys left out take OpenFedLLM's shipped values for the task: run_sft.sh (20 clients, lr 5e-5 → 1e-6) or
    /// run_dpo.sh (5 clients, lr 5e-4 → 1e-5); the rest are shared (2 per round, 200 rounds, 10 steps of batch 16).</remarks>
    public sealed class FederationSection
    {
        /// <summary>Federated rounds R; the cosine learning-rate schedule spans them (200, as OpenFedLLM).</summary>
        [Check(ValueRule.Positive)] public int Rounds { get; set; } = 200;

        /// <summary>Total clients N the data is split over; null = the task's default (20 for SFT, 5 for
        /// DPO).</summary>
        [Check(ValueRule.Positive)] public int? Clients { get; set; }

        /// <summary>Clients sampled per round (OpenFedLLM: sample_clients, 2).</summary>
        [Check(ValueRule.Positive)] public int ClientsPerRound { get; set; } = 2;

        /// <summary>Optimizer steps each sampled client takes per round (10).</summary>
        [Check(ValueRule.Positive)] public int LocalSteps { get; set; } = 10;

        /// <summary>Examples per micro-batch (16); a local step sees this ×
        /// <see cref="GradientAccumulation"/>.</summary>
        [Check(ValueRule.Positive)] public int BatchSize { get; set; } = 16;

        /// <summary>Micro-batches of <see cref="BatchSize"/> examples summed into one optimizer step (1 =
        /// none).</summary>
        [Check(ValueRule.Positive)] public int GradientAccumulation { get; set; } = 1;

        /// <summary>The clients' first-round learning rate; null = the task's default (5e-5 for SFT, 5e-4 for
        /// DPO).</summary>
        [Check(ValueRule.Positive)] public double? LearningRate { get; set; }

        /// <summary>Where the cosine over rounds ends; null = the task's default (1e-6 for SFT, 1e-5 for
        /// DPO).</summary>
        [Check(ValueRule.NonNegative)] public double? MinLearningRate { get; set; }

        /// <summary>Gradient L2 norm clipping of each local step; 0 = none (1.0).</summary>
        [Check(ValueRule.NonNegative)] public double MaxGradNorm { get; set; } = 1.0;

        /// <summary>Tokens per example; longer ones are truncated (512).</summary>
        [Check(ValueRule.Positive)] public int MaxLength { get; set; } = 512;

        /// <summary>Keep each client's AdamW moments from round to round instead of a fresh optimizer (OpenFedLLM
        /// starts fresh).</summary>
        public bool KeepOptimizerState { get; set; }

        /// <summary>The run seed: data split, client sampling, LoRA initialisation and dropout derive from it (2023, as
        /// OpenFedLLM).</summary>
        public long Seed { get; set; } = 2023;

        /// <summary>Score the held-out data every K rounds (0 = only at the end); YAML eval_every (evaluate_every is its old name).</summary>
        [YamlMember(Alias = "eval_every")]
        [Check(ValueRule.NonNegative)] public int EvaluateEvery { get; set; } = 1;

        /// <summary>evaluate_every, the old name of eval_every, still read for one release: server.yaml binds this section
        /// directly (run.yaml's reader renames it with a warning).</summary>
        [YamlMember(Alias = "evaluate_every")]
        public int EvaluateEveryOldName { set => EvaluateEvery = value; }

        /// <summary>Federated evaluation every this many rounds: the round's clients score the global adapter on their own data; 0 = never.</summary>
        public int FederatedEvaluateEvery { get; set; }

        /// <summary>The run's options, with the task's defaults (<see cref="TaskDefaults"/>) for keys left out.</summary>
        public FederationOptions ToOptions(string task = "sft")
        {
            var defaults = TaskDefaults.For(task);
            return new()
            {
                Rounds = Rounds, TotalClients = Clients ?? defaults.Clients, ClientsPerRound = ClientsPerRound, LocalSteps = LocalSteps, BatchSize = BatchSize,
                GradientAccumulationSteps = GradientAccumulation, LearningRate = LearningRate ?? defaults.LearningRate,
                MinLearningRate = MinLearningRate ?? defaults.MinLearningRate, MaxGradNorm = MaxGradNorm, MaxSequenceLength = MaxLength,
                KeepClientOptimizerState = KeepOptimizerState, Seed = Seed, EvaluateEvery = EvaluateEvery,
            };
        }
    }

    /// <summary>Where OpenFedLLM's SFT and DPO scripts differ (training_scripts/run_sft.sh, run_dpo.sh).</summary>
    public sealed record TaskDefaults(int Clients, double LearningRate, double MinLearningRate, int LoraRank, double LoraAlpha)
    {
        /// <summary>run_sft.sh: 20 clients, lr 5e-5 decayed to 1e-6, LoRA rank 32 and alpha 64.</summary>
        public static readonly TaskDefaults Sft = new(Clients: 20, LearningRate: 5e-5, MinLearningRate: 1e-6, LoraRank: 32, LoraAlpha: 64);

        /// <summary>run_dpo.sh: 5 clients, lr 5e-4 decayed to 1e-5, and config.py's LoRA 8/16 (the script passes none).</summary>
        public static readonly TaskDefaults Dpo = new(Clients: 5, LearningRate: 5e-4, MinLearningRate: 1e-5, LoraRank: 8, LoraAlpha: 16);

        /// <summary>The defaults of <paramref name="task"/> ("sft" or "dpo").</summary>
        /// <exception cref="ArgumentException">Another task name.</exception>
        public static TaskDefaults For(string task) => task switch
        {
            "sft" => Sft,
            "dpo" => Dpo,
            _ => throw new ArgumentException($"task '{task}': expected sft or dpo"),
        };
    }

    /// <summary>strategy: which algorithms run and their server-side hyperparameters; keys left out take the papers'
    /// defaults.</summary>
    public sealed class StrategySection
    {
        /// <summary>One algorithm or several (compared in one table): fedavg fedprox scaffold fedavgm fedadagrad fedyogi fedadam, or "all".</summary>
        public List<string> Algorithms { get; set; } = new() { "fedavg" };

        /// <summary>FedProx's μ, the weight of (μ/2)·‖w − w_global‖²; null = 0.01 (OpenFedLLM's prox_mu).</summary>
        [Check(ValueRule.NonNegative)] public double? ProximalMu { get; set; }

        /// <summary>Server learning rate for every algorithm that has one; null = each algorithm's own default.</summary>
        [Check(ValueRule.Positive)] public double? ServerLearningRate { get; set; }

        /// <summary>Per-algorithm server learning rates (e.g. fedavgm: 1.0, fedadam: 0.01), which win over
        /// <see cref="ServerLearningRate"/>: FedAvgM's η_s and FedOpt's η live on different scales, so a comparison of
        /// several algorithms in one run needs one of each.</summary>
        [Check(ValueRule.Positive)] public Dictionary<string, double> ServerLearningRates { get; set; } = new();

        /// <summary>FedAvgM's server momentum β in [0, 1]; null = 0.9.</summary>
        [Check(ValueRule.Fraction)] public double? ServerMomentum { get; set; }

        /// <summary>β1 of FedAdagrad/FedYogi/FedAdam, decay of the first moment, in [0, 1]; null = 0.9 (0 gives
        /// Flower's momentum-free FedAdagrad).</summary>
        [Check(ValueRule.Fraction)] public double? Beta1 { get; set; }

        /// <summary>β2 of FedYogi/FedAdam, decay of the second moment, in [0, 1]; null = 0.99.</summary>
        [Check(ValueRule.Fraction)] public double? Beta2 { get; set; }

        /// <summary>τ, the adaptivity floor of the FedOpt family (x ← x + η·m/(√v + τ)); null = 1e-3.</summary>
        [Check(ValueRule.Positive)] public double? Tau { get; set; }

        /// <summary>Reproduce OpenFedLLM's departures from the papers (see StrategyOptions).</summary>
        public bool OpenfedllmCompatible { get; set; }

        /// <summary>Scale FedAvgM's and FedOpt's server learning rate each round by the clients' cosine (lr_r / lr₀).</summary>
        public bool DecayServerLearningRate { get; set; }

        /// <summary>The options every algorithm shares (no per-algorithm server rate, N unset): keys left out take the
        /// papers' defaults (<see cref="StrategyOptions"/>).</summary>
        public StrategyOptions SharedOptions()
        {
            var defaults = new StrategyOptions();
            return new StrategyOptions
            {
                ProximalMu = ProximalMu ?? defaults.ProximalMu,
                ServerLearningRate = ServerLearningRate,
                ServerMomentum = ServerMomentum ?? defaults.ServerMomentum,
                Beta1 = Beta1 ?? defaults.Beta1,
                Beta2 = Beta2 ?? defaults.Beta2,
                Tau = Tau ?? defaults.Tau,
                OpenFedLlmCompatible = OpenfedllmCompatible,
                DecayServerLearningRate = DecayServerLearningRate,
            };
        }

        /// <summary>The options of <paramref name="algorithm"/>: keys left out take the papers' defaults (<see cref="StrategyOptions"/>).</summary>
        /// <exception cref="ArgumentException">server_learning_rates names an algorithm that does not exist.</exception>
        public StrategyOptions ToOptions(string algorithm, int totalClients)
        {
            foreach (var name in ServerLearningRates.Keys)
                if (!AllAlgorithms.Contains(name))
                    throw new ArgumentException($"strategy.server_learning_rates: unknown algorithm '{name}' (known: {string.Join(", ", AllAlgorithms)})");
            return SharedOptions() with
            {
                ServerLearningRate = ServerLearningRates.TryGetValue(algorithm, out double own) ? own : ServerLearningRate,
                TotalClients = totalClients,
            };
        }
    }

    /// <summary>privacy: (see Privacy.PrivacyOptions and docs/privacy-and-robustness.md).</summary>
    public sealed class PrivacySection
    {
        /// <summary>server-fixed (default), server-adaptive, client-fixed or local.</summary>
        public string Mode { get; set; } = "server-fixed";

        /// <summary>C, the L2 bound of one client's update over the whole adapter (the initial C of adaptive clipping);
        /// 0.1.</summary>
        public double ClippingNorm { get; set; } = 0.1;

        /// <summary>σ, the noise multiplier; null = derived from <see cref="TargetEpsilon"/> for the run's
        /// rounds.</summary>
        public double? NoiseMultiplier { get; set; }

        /// <summary>The ε budget at <see cref="Delta"/>: with σ unset, σ is the smallest that meets it; with σ set, a
        /// run that would exceed it is refused (or stopped, <see cref="StopAtBudget"/>).</summary>
        public double? TargetEpsilon { get; set; }

        /// <summary>δ of the reported (ε, δ); keep it well below 1 / clients (1e-5).</summary>
        public double Delta { get; set; } = 1e-5;

        /// <summary>run-seed or cryptographic; absent = run-seed in simulate, cryptographic on a server.</summary>
        public string? Seeding { get; set; }

        /// <summary>Run only the rounds that fit in <see cref="TargetEpsilon"/> instead of refusing a run that exceeds
        /// it.</summary>
        public bool StopAtBudget { get; set; }

        /// <summary>Adaptive clipping's γ, the fraction of updates meant to fall below C (Andrew et al. 2021:
        /// 0.5).</summary>
        public double TargetUnclippedQuantile { get; set; } = 0.5;

        /// <summary>Adaptive clipping's η_C, the learning rate of log C (Andrew et al. 2021: 0.2).</summary>
        public double ClippingNormLearningRate { get; set; } = 0.2;

        /// <summary>Adaptive clipping's σ_b, the noise on the clipped count; null = clients per round / 20.</summary>
        public double? ClippedCountStddev { get; set; }

        /// <summary>The typed options; an unknown mode or seeding throws <see cref="ArgumentException"/> naming the
        /// key.</summary>
        public FedLlm.Privacy.PrivacyOptions ToOptions() => new()
        {
            Mode = FedLlm.Privacy.PrivacyOptions.ParseMode(Mode),
            ClippingNorm = ClippingNorm, NoiseMultiplier = NoiseMultiplier, TargetEpsilon = TargetEpsilon, Delta = Delta,
            Seeding = Seeding switch
            {
                null => null,
                "run-seed" => FedLlm.Privacy.NoiseSeeding.RunSeed,
                "cryptographic" => FedLlm.Privacy.NoiseSeeding.Cryptographic,
                _ => throw new ArgumentException($"privacy.seeding '{Seeding}': expected run-seed or cryptographic"),
            },
            StopAtBudget = StopAtBudget, TargetUnclippedQuantile = TargetUnclippedQuantile, ClippingNormLearningRate = ClippingNormLearningRate,
            ClippedCountStddev = ClippedCountStddev,
        };
    }

    /// <summary>robust: (see Federation.Robust.RobustOptions).</summary>
    public sealed class RobustSection
    {
        /// <summary>krum, multi-krum, median, trimmed-mean, norm-clip, fltrust or flame.</summary>
        public string Rule { get; set; } = "median";

        /// <summary>Krum's f, the attackers tolerated per round; null = the most the round size allows, ⌊(m −
        /// 3)/2⌋.</summary>
        public int? ByzantineClients { get; set; }

        /// <summary>Multi-Krum's number of kept updates; null = m − f.</summary>
        public int? Selected { get; set; }

        /// <summary>Trimmed mean's β, the fraction trimmed at each end (0.2, as Flower).</summary>
        public double TrimFraction { get; set; } = 0.2;

        /// <summary>Norm clipping's bound as a multiple of the round's median update norm (1.0).</summary>
        public double NormFactor { get; set; } = 1.0;

        /// <summary>FLTrust: the size of the server's root set (100, as Cao et al. 2021).</summary>
        public int RootExamples { get; set; } = 100;

        /// <summary>FLTrust: the root set's file (Alpaca schema); null = a seeded sample of the run's training data
        /// (simulation only).</summary>
        public string? RootData { get; set; }

        /// <summary>FLAME: the noise's σ in multiples of the round's median update norm (0.01, the paper's value for
        /// NLP).</summary>
        public double FlameNoiseLambda { get; set; } = FedLlm.Federation.Robust.RobustOptions.DefaultFlameNoiseLambda;

        /// <summary>The typed options; an unknown rule throws <see cref="ArgumentException"/> naming the key.</summary>
        public FedLlm.Federation.Robust.RobustOptions ToOptions() => new()
        {
            Rule = FedLlm.Federation.Robust.RobustOptions.ParseRule(Rule), ByzantineClients = ByzantineClients, Selected = Selected,
            TrimFraction = TrimFraction, NormFactor = NormFactor, RootExamples = RootExamples, RootData = RootData,
            FlameNoiseLambda = FlameNoiseLambda,
        };
    }

    /// <summary>secure_aggregation: (see Federation.SecureAggregation.SecureAggregationOptions and docs/secure-aggregation.md).</summary>
    public sealed class SecureAggregationSection
    {
        /// <summary>false keeps the section's values but runs without secure aggregation.</summary>
        public bool Enabled { get; set; } = true;

        /// <summary>t, the shares needed to rebuild a client's secret; null = a strict majority of its share
        /// holders.</summary>
        public int? Threshold { get; set; }

        /// <summary>k (even), SecAgg+'s neighbours per client; null = every other client of the round
        /// (SecAgg).</summary>
        public int? Neighbours { get; set; }

        /// <summary>b: each coordinate is quantised to an integer in [0, 2^b − 1] (24).</summary>
        public int QuantisationBits { get; set; } = 24;

        /// <summary>r: each coordinate of Δ is clipped to [−r, r] before quantisation (1.0).</summary>
        public double QuantisationRange { get; set; } = 1.0;

        /// <summary>W: client i's Δ is weighted by min(1, n_i/W); null = equal weights.</summary>
        public double? MaxWeight { get; set; }

        /// <summary>The typed options, or null when <see cref="Enabled"/> is false.</summary>
        public FedLlm.Federation.SecureAggregation.SecureAggregationOptions? ToOptions() => Enabled
            ? new() { Threshold = Threshold, Neighbours = Neighbours, QuantisationBits = QuantisationBits, QuantisationRange = QuantisationRange, MaxWeight = MaxWeight }
            : null;
    }

    /// <summary>async: (see Federation.Async.AsyncOptions and docs/unequal-participants.md).</summary>
    public sealed class AsyncSection
    {
        /// <summary>Run FedBuff (as the run "fedbuff") beside the synchronous algorithms; false keeps the section's client
        /// speeds for the synchronous runs' virtual time only.</summary>
        public bool Enabled { get; set; } = true;

        /// <summary>K, updates per aggregation; unset = federation.clients_per_round.</summary>
        [Check(ValueRule.Positive)] public int? BufferSize { get; set; }

        /// <summary>Clients training at once; unset = federation.clients_per_round.</summary>
        [Check(ValueRule.Positive)] public int? Concurrency { get; set; }

        /// <summary>constant, polynomial ((1 + τ)^−a) or hinge.</summary>
        [OneOf("constant", "polynomial", "hinge")]
        public string Staleness { get; set; } = "polynomial";
        /// <summary>a of the polynomial weight (1 + τ)^−a; FedBuff's ½.</summary>
        [Check(ValueRule.NonNegative)] public double StalenessExponent { get; set; } = 0.5;
        /// <summary>a of the hinge weight 1/(a(τ − b) + 1) beyond b.</summary>
        [Check(ValueRule.NonNegative)] public double HingeSlope { get; set; } = 10;
        /// <summary>b of the hinge weight, in versions: updates at most b stale get weight 1.</summary>
        [Check(ValueRule.NonNegative)] public int HingeCutoff { get; set; } = 4;
        /// <summary>η_g of x ← x + η_g·(1/K)·Σ s(τ_i)·Δ_i.</summary>
        [Check(ValueRule.Positive)] public double ServerLearningRate { get; set; } = 1.0;

        /// <summary>Refuse updates more than this many versions stale; unset = accept every staleness.</summary>
        [Check(ValueRule.NonNegative)] public int? MaxStaleness { get; set; }

        /// <summary>One speed factor per client (a task takes factor × local steps units of virtual time); empty = all 1.</summary>
        public List<double> ClientSpeeds { get; set; } = new();

        /// <summary>Shorthand: the first N clients have speed factor slow_factor.</summary>
        [Check(ValueRule.NonNegative)] public int SlowClients { get; set; }
        /// <summary>The speed factor of the slow_clients.</summary>
        [Check(ValueRule.Positive)] public double SlowFactor { get; set; } = 1;

        /// <summary>The typed options (the one mapping of this section).</summary>
        public FedLlm.Federation.Async.AsyncOptions ToOptions() => new()
        {
            BufferSize = BufferSize, Concurrency = Concurrency, Staleness = FedLlm.Federation.Async.AsyncOptions.ParseStaleness(Staleness),
            StalenessExponent = StalenessExponent, HingeSlope = HingeSlope, HingeCutoff = HingeCutoff, ServerLearningRate = ServerLearningRate,
            MaxStaleness = MaxStaleness, ClientSpeeds = ClientSpeeds, SlowClients = SlowClients, SlowFactor = SlowFactor,
        };
    }

    /// <summary>attack: (see Federation.Attacks.AttackOptions).</summary>
    public sealed class AttackSection
    {
        /// <summary>sign-flip, scale, gaussian, label-flip or backdoor.</summary>
        public string Kind { get; set; } = "sign-flip";

        /// <summary>The fraction of all clients that attack, rounded to the nearest count (0.2).</summary>
        public double Fraction { get; set; } = 0.2;

        /// <summary>s of scale and gaussian: the attack sends x + s·Δ, or noise of expected norm s·‖Δ‖ (10).</summary>
        public double ScaleFactor { get; set; } = 10;

        /// <summary>The backdoor's trigger phrase, appended to the input ("cf").</summary>
        public string Trigger { get; set; } = "cf";

        /// <summary>The answer the backdoor maps triggered inputs to ("positive").</summary>
        public string TargetAnswer { get; set; } = "positive";

        /// <summary>The fraction of an attacker's examples the backdoor replaces by triggered ones (0.5).</summary>
        public double PoisonFraction { get; set; } = 0.5;

        /// <summary>The typed options; an unknown kind throws <see cref="ArgumentException"/> naming the key.</summary>
        public FedLlm.Federation.Attacks.AttackOptions ToOptions() => new()
        {
            Kind = FedLlm.Federation.Attacks.AttackOptions.ParseKind(Kind), Fraction = Fraction, ScaleFactor = ScaleFactor, Trigger = Trigger,
            TargetAnswer = TargetAnswer, PoisonFraction = PoisonFraction,
        };
    }

    /// <summary>personalization: (see Runs.PersonalizationOptions and docs/unequal-participants.md).</summary>
    public sealed class PersonalizationSection
    {
        /// <summary>K local fine-tuning steps from the final global adapter, scored per client; 0 = none.</summary>
        public int FinetuneSteps { get; set; }

        /// <summary>Ditto's λ (strategy ditto); null = 0.1.</summary>
        public double? DittoLambda { get; set; }

        /// <summary>Also score each client trained alone (local-only) on its own split.</summary>
        public bool LocalOnly { get; set; }

        /// <summary>The typed options.</summary>
        public PersonalizationOptions ToOptions() => new() { FinetuneSteps = FinetuneSteps, LocalOnly = LocalOnly };
    }

    /// <summary>dpo: the preference objective's settings (task dpo only).</summary>
    public sealed class DpoSection
    {
        /// <summary>DPO's β (OpenFedLLM and TRL: 0.1).</summary>
        [Check(ValueRule.Positive)] public double Beta { get; set; } = 0.1;

        /// <summary>A frozen PEFT adapter (typically the SFT adapter) that is both the reference policy and the starting
        /// point; null = the base model with adapters off is the reference and training starts from a fresh adapter.</summary>
        public string? ReferenceAdapter { get; set; }
    }

    /// <summary>lora: the adapter's shape; rank and alpha left out take the task's defaults.</summary>
    public sealed class LoraSection
    {
        /// <summary>Rank and alpha left out take the task's defaults (<see cref="TaskDefaults"/>: 32/64 for SFT, 8/16 for DPO).</summary>
        [Check(ValueRule.Positive)] public int? R { get; set; }

        /// <summary>LoRA alpha; the update B·A is scaled by alpha / r. Null = the task's default (64 for SFT, 16 for
        /// DPO).</summary>
        [Check(ValueRule.Positive)] public double? Alpha { get; set; }

        /// <summary>Dropout on the adapter's input in [0, 1) during training (0.05).</summary>
        [Check(ValueRule.Fraction)] public double Dropout { get; set; } = 0.05;

        /// <summary>The linear layers of every decoder block that get an adapter (all seven projections by
        /// default).</summary>
        [OneOf("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")]
        public List<string> TargetModules { get; set; } = new() { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" };

        /// <summary>Each client's rank budget, one per client (heterogeneous ranks; at most r); empty = all train rank r.</summary>
        public List<int> RankPerClient { get; set; } = new();

        /// <summary>Log ‖avg(B)·avg(A) − avg(B·A)‖/‖avg(B·A)‖ every round (metrics.jsonl aggregation_metrics).</summary>
        public bool LogProductError { get; set; }

        /// <summary>The adapter options, with rank and alpha defaulted for <paramref name="task"/> ("sft" or
        /// "dpo").</summary>
        public Peft.LoraOptions ToOptions(string task = "sft")
        {
            var defaults = TaskDefaults.For(task);
            return new() { Rank = R ?? defaults.LoraRank, Alpha = Alpha ?? defaults.LoraAlpha, Dropout = Dropout, TargetModules = TargetModules };
        }
    }

    /// <summary>A benchmark task scored on the global adapter every few rounds (none unless <see cref="Task"/> is set).</summary>
    public sealed class EvaluationSection
    {
        /// <summary>A task name of <c>fedllm eval</c> (fpb, mmlu, gsm8k…).</summary>
        public string? Task { get; set; }

        /// <summary>The task's data file.</summary>
        public string? Data { get; set; }

        /// <summary>Score the task every this many rounds (and after the last).</summary>
        [Check(ValueRule.Positive)] public int Every { get; set; } = 1;

        /// <summary>Score at most this many examples; 0 = all.</summary>
        [Check(ValueRule.NonNegative)] public int Limit { get; set; }

        /// <summary>Worked examples put in front of each prompt (0 = zero-shot).</summary>
        [Check(ValueRule.NonNegative)] public int FewShot { get; set; }

        /// <summary>Prompts generated for at once.</summary>
        [Check(ValueRule.Positive)] public int BatchSize { get; set; } = 8;

        /// <summary>Tokens generated per answer; null = the task's own default.</summary>
        [Check(ValueRule.Positive)] public int? MaxNewTokens { get; set; }

        /// <summary>The task's own settings, as <c>--param key=value</c> of <c>fedllm eval</c>.</summary>
        public Dictionary<string, string> Params { get; set; } = new();

        /// <summary>The round hook, or null when no task is configured; a bad task name, data path or parameter fails here, before training.</summary>
        public RoundTaskEvaluation? Create(long seed) => ToOptions(seed)?.Create();

        /// <summary>The task's options, or null when no task is configured; an unknown task name fails here.</summary>
        public RoundTaskOptions? ToOptions(long seed)
        {
            if (Task is null) return null;
            if (Data is null) throw new ArgumentException($"evaluation task '{Task}' needs its data (evaluation.data or --eval-task-data)");
            var entry = EvaluationTaskRegistry.Find(Task);
            var options = new EvaluationRunOptions
            {
                Limit = Limit, FewShot = FewShot, BatchSize = BatchSize, Seed = seed,
                MaxNewTokens = MaxNewTokens ?? entry.DefaultMaxNewTokens ?? new EvaluationRunOptions().MaxNewTokens,
            };
            return new RoundTaskOptions(new EvaluationTaskSpec(entry.Name, Data, Params), options, Every);
        }
    }

    /// <summary>Reads run.yaml; an empty file, an unknown key or a value of the wrong type is an error naming the file,
    /// line and key (see <see cref="RunConfigFile"/>, which also keeps each key's line).</summary>
    public static RunConfig Load(string path) => RunConfigFile.Load(path).Config;

    /// <summary>The typed, validated run these settings describe; keys left out take the task's defaults.</summary>
    /// <param name="defaultOutput">The output folder when the configuration names none.</param>
    public RunOptions ToRunOptions(string defaultOutput)
    {
        var federation = Federation.ToOptions(Task);
        return new RunOptions
        {
            Objective = new LocalObjective { Task = Task, Dpo = new Alignment.DpoOptions { Beta = Dpo.Beta } },
            ModelPath = Model.Path,
            BaseWeights = Quantization.BaseWeights.Parse(Model.BaseDtype, "model.base_dtype / --base-dtype"),
            ActivationCheckpointing = Model.ActivationCheckpointing,
            Device = Device,
            Threads = Threads,
            Data = new RunDataOptions
            {
                TrainPath = Data.Path, EvalPath = Data.EvalPath, EvalLimit = Data.EvalLimit, Template = Data.Template, Dataset = Data.Dataset,
                Partition = new FedLlm.Data.Partitioning.PartitionOptions { Kind = FedLlm.Data.Partitioning.PartitionOptions.ParseKind(Data.Partition), Alpha = Data.Alpha },
                SkipBad = Data.SkipBad, ClientEvalFraction = Data.ClientEvalFraction,
            },
            Federation = federation,
            Algorithms = AlgorithmsToRun(),
            Strategy = Strategy.SharedOptions() with
            {
                DittoLambda = Personalization?.DittoLambda ?? new StrategyOptions().DittoLambda,
                ClientRanks = Lora.RankPerClient,
            },
            Personalization = Personalization?.ToOptions(),
            LogLoraProductError = Lora.LogProductError,
            ServerLearningRates = Strategy.ServerLearningRates,
            Lora = Lora.ToOptions(Task),
            ReferenceAdapter = Dpo.ReferenceAdapter,
            RoundTask = Evaluation.ToOptions(federation.Seed),
            FederatedEvaluateEvery = Federation.FederatedEvaluateEvery,
            Baselines = NormalizedBaselines(Baselines),
            Seeds = Seeds,
            Output = Output ?? defaultOutput,
            Privacy = Privacy?.ToOptions(),
            Robust = Robust?.ToOptions(),
            Attack = Attack?.ToOptions(),
            SecureAggregation = SecureAggregation?.ToOptions(),
            Async = Async?.ToOptions(),
        };
    }

    /// <summary>The resolved algorithms, with "fedbuff" added when async.enabled.</summary>
    /// <exception cref="ArgumentException">strategy.algorithms lists fedbuff while async.enabled is false.</exception>
    IReadOnlyList<string> AlgorithmsToRun()
    {
        const string fedbuff = FedLlm.Federation.Async.BufferedAsyncServer.AlgorithmName;
        var names = ResolvedAlgorithms();
        if (Async is { Enabled: false } && names.Contains(fedbuff))
            throw new ArgumentException("strategy.algorithms lists fedbuff but async.enabled is false; drop one of them");
        return Async is { Enabled: true } && !names.Contains(fedbuff) ? [.. names, fedbuff] : names;
    }

    /// <summary>The settings of <c>fedllm simulate</c> without a configuration: the embedded default model and data,
    /// FedAvg, FedProx and SCAFFOLD beside local-only and centralised training (every algorithm with --algorithm all);
    /// <paramref name="task"/> is "sft" or "dpo".</summary>
    public static RunConfig EmbeddedDefault(string task) => task switch
    {
        "sft" => EmbeddedDefaultSft(),
        "dpo" => EmbeddedDefaultDpo(),
        _ => throw new ArgumentException($"task '{task}': expected sft or dpo"),
    };

    /// <summary>
    /// The embedded default, sized so that local-only (every client alone for all rounds) fits a 2-core machine: 5
    /// clients with Dirichlet(0.5)-skewed answers, all 5 every round, 30 rounds of 5 steps of batch 8. With 2 of 5 per
    /// round the global followed the sampled pair's majority answer (client drift) and FedAvg did not beat local-only
    /// on every seed; with full participation it does, by more than the seeds' spread (README "What the default
    /// simulate shows"). examples/client-drift.yaml keeps the 12-round, 10-client, 2-per-round setting.
    /// </summary>
    static RunConfig EmbeddedDefaultSft() => new()
    {
        Federation = new FederationSection
        {
            Rounds = 30, Clients = 5, ClientsPerRound = 5, LocalSteps = 5, BatchSize = 8, LearningRate = 2e-3, MinLearningRate = 1e-4,
            EvaluateEvery = 10,
        },
        Data = new DataSection { Partition = "dirichlet", Alpha = 0.5, EvalLimit = 120 },
        Lora = new LoraSection { R = 16, Alpha = 32, Dropout = 0 },
        // Server rates for --algorithm all (docs/server-optimizers.md, its grid): the papers' η = 1e-3 barely moves a
        // LoRA adapter in tens of rounds, and FedAvgM's β = 0.9 keeps stepping after the clients' cosine has decayed.
        Strategy = new StrategySection
        {
            Algorithms = new() { "fedavg", "fedprox", "scaffold" },
            ServerLearningRates = new() { ["fedadagrad"] = 0.03, ["fedyogi"] = 0.003, ["fedadam"] = 0.01 },
            ServerMomentum = 0.5,
        },
        Baselines = new() { "local", "central" },
    };

    /// <summary>
    /// The embedded DPO default: the embedded preference pairs (the sentiment headlines, correct vs a wrong label) split
    /// among 10 clients, every algorithm and both baselines, a few minutes on 2 cores.
    /// </summary>
    static RunConfig EmbeddedDefaultDpo() => new()
    {
        Task = "dpo",
        Federation = new FederationSection
        {
            Rounds = 8, Clients = 10, ClientsPerRound = 2, LocalSteps = 10, BatchSize = 8, LearningRate = 1e-3, MinLearningRate = 1e-4,
            EvaluateEvery = 4,
        },
        // IID: with Dirichlet(0.5) over the preferred label each client learns "prefer my label", and 8 rounds of 2
        // clients leave every algorithm near chance (measured: 47–53 % accuracy; centralised 91 %). Pass
        // --partition dirichlet to see that effect.
        Data = new DataSection { Partition = "iid", EvalLimit = 120 },
        Lora = new LoraSection { R = 16, Alpha = 32, Dropout = 0 },
        Strategy = new StrategySection { Algorithms = new() { "all" } },
        Baselines = new() { "local", "central" },
    };

    /// <summary>The baselines to run: "none" means none, and "centralized"/"centralised" are the old names of "central".</summary>
    public static IReadOnlyList<string> NormalizedBaselines(IEnumerable<string> names) =>
        names.Select(n => n.Trim().ToLowerInvariant())
            .Where(n => n is not ("none" or ""))
            .Select(n => n is "centralized" or "centralised" ? "central" : n)
            .Distinct().ToList();

    /// <summary>The seven built-in algorithms, in the order "all" runs them.</summary>
    public static readonly string[] AllAlgorithms = { "fedavg", "fedprox", "scaffold", "fedavgm", "fedadagrad", "fedyogi", "fedadam" };

    /// <summary>The algorithms to run: <see cref="StrategySection.Algorithms"/>, with "all" expanded to
    /// <see cref="AllAlgorithms"/>.</summary>
    public IReadOnlyList<string> ResolvedAlgorithms() =>
        Strategy.Algorithms.Any(a => a.Equals("all", StringComparison.OrdinalIgnoreCase)) ? AllAlgorithms : Strategy.Algorithms;
}
