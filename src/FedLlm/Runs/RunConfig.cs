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
    public string Task { get; set; } = "sft";

    public ModelSection Model { get; set; } = new();
    public DataSection Data { get; set; } = new();
    public FederationSection Federation { get; set; } = new();
    public StrategySection Strategy { get; set; } = new();
    public LoraSection Lora { get; set; } = new();
    public DpoSection Dpo { get; set; } = new();
    public EvaluationSection Evaluation { get; set; } = new();

    /// <summary>Client-level differential privacy; absent = none.</summary>
    public PrivacySection? Privacy { get; set; }

    /// <summary>Byzantine-robust aggregation; absent = the algorithm's own mean.</summary>
    public RobustSection? Robust { get; set; }

    /// <summary>Simulated attackers (simulate only); absent = none.</summary>
    public AttackSection? Attack { get; set; }

    /// <summary>Per-client evaluation of personalisation (simulate only); absent = none.</summary>
    public PersonalizationSection? Personalization { get; set; }

    /// <summary>Runs beside the federated ones, with the same step budget: "local" (each client alone) and "central" (pooled data).</summary>
    public List<string> Baselines { get; set; } = new();

    public string? Output { get; set; }
    public int? Threads { get; set; }
    public string Device { get; set; } = "cpu";

    public sealed class ModelSection
    {
        /// <summary>Checkpoint folder; null = the embedded default.</summary>
        public string? Path { get; set; }

        /// <summary>How the frozen base is stored: fp32, bf16, int8 or nf4 (see Quantization.BasePrecision).</summary>
        public string BaseDtype { get; set; } = "fp32";

        /// <summary>Recompute each decoder layer's activations during backward.</summary>
        public bool ActivationCheckpointing { get; set; }
    }

    public sealed class DataSection
    {
        public string? Path { get; set; }
        public string? EvalPath { get; set; }
        public int? EvalLimit { get; set; }
        public string Template { get; set; } = "alpaca";

        /// <summary>The data set's schema (alpaca, ultrafeedback, hh-rlhf, generic-preference…); null = alpaca for sft,
        /// generic-preference ({prompt, chosen, rejected}) for dpo.</summary>
        public string? Dataset { get; set; }

        /// <summary>iid or dirichlet (over the label: the response text unless a column is named).</summary>
        public string Partition { get; set; } = "dirichlet";
        public double Alpha { get; set; } = 0.5;
        public bool SkipBad { get; set; }

        /// <summary>The share of each client's shard held out to score that client's adapters; 0 = none.</summary>
        public double ClientEvalFraction { get; set; }
    }

    /// <remarks>Keys left out take OpenFedLLM's shipped values for the task: run_sft.sh (20 clients, lr 5e-5 → 1e-6) or
    /// run_dpo.sh (5 clients, lr 5e-4 → 1e-5); the rest are shared (2 per round, 200 rounds, 10 steps of batch 16).</remarks>
    public sealed class FederationSection
    {
        public int Rounds { get; set; } = 200;
        public int? Clients { get; set; }
        public int ClientsPerRound { get; set; } = 2;
        public int LocalSteps { get; set; } = 10;
        public int BatchSize { get; set; } = 16;
        public int GradientAccumulation { get; set; } = 1;
        public double? LearningRate { get; set; }
        public double? MinLearningRate { get; set; }
        public double MaxGradNorm { get; set; } = 1.0;
        public int MaxLength { get; set; } = 512;
        public bool KeepOptimizerState { get; set; }
        public long Seed { get; set; } = 2023;
        public int EvaluateEvery { get; set; } = 1;

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
        public static readonly TaskDefaults Sft = new(Clients: 20, LearningRate: 5e-5, MinLearningRate: 1e-6, LoraRank: 32, LoraAlpha: 64);

        /// <summary>run_dpo.sh: 5 clients, lr 5e-4 decayed to 1e-5, and config.py's LoRA 8/16 (the script passes none).</summary>
        public static readonly TaskDefaults Dpo = new(Clients: 5, LearningRate: 5e-4, MinLearningRate: 1e-5, LoraRank: 8, LoraAlpha: 16);

        public static TaskDefaults For(string task) => task switch
        {
            "sft" => Sft,
            "dpo" => Dpo,
            _ => throw new ArgumentException($"task '{task}': expected sft or dpo"),
        };
    }

    public sealed class StrategySection
    {
        /// <summary>One algorithm or several (compared in one table): fedavg fedprox scaffold fedavgm fedadagrad fedyogi fedadam, or "all".</summary>
        public List<string> Algorithms { get; set; } = new() { "fedavg" };
        public double? ProximalMu { get; set; }

        /// <summary>Server learning rate for every algorithm that has one; null = each algorithm's own default.</summary>
        public double? ServerLearningRate { get; set; }

        /// <summary>Per-algorithm server learning rates (e.g. fedavgm: 1.0, fedadam: 0.01), which win over
        /// <see cref="ServerLearningRate"/>: FedAvgM's η_s and FedOpt's η live on different scales, so a comparison of
        /// several algorithms in one run needs one of each.</summary>
        public Dictionary<string, double> ServerLearningRates { get; set; } = new();
        public double? ServerMomentum { get; set; }
        public double? Beta1 { get; set; }
        public double? Beta2 { get; set; }
        public double? Tau { get; set; }

        /// <summary>Reproduce OpenFedLLM's departures from the papers (see StrategyOptions).</summary>
        public bool OpenfedllmCompatible { get; set; }

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
        public double ClippingNorm { get; set; } = 0.1;
        public double? NoiseMultiplier { get; set; }
        public double? TargetEpsilon { get; set; }
        public double Delta { get; set; } = 1e-5;

        /// <summary>run-seed or cryptographic; absent = run-seed in simulate, cryptographic on a server.</summary>
        public string? Seeding { get; set; }
        public bool StopAtBudget { get; set; }
        public double TargetUnclippedQuantile { get; set; } = 0.5;
        public double ClippingNormLearningRate { get; set; } = 0.2;
        public double? ClippedCountStddev { get; set; }

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
        /// <summary>krum, multi-krum, median, trimmed-mean, norm-clip or fltrust.</summary>
        public string Rule { get; set; } = "median";
        public int? ByzantineClients { get; set; }
        public int? Selected { get; set; }
        public double TrimFraction { get; set; } = 0.2;
        public double NormFactor { get; set; } = 1.0;
        public int RootExamples { get; set; } = 100;
        public string? RootData { get; set; }

        public FedLlm.Federation.Robust.RobustOptions ToOptions() => new()
        {
            Rule = FedLlm.Federation.Robust.RobustOptions.ParseRule(Rule), ByzantineClients = ByzantineClients, Selected = Selected,
            TrimFraction = TrimFraction, NormFactor = NormFactor, RootExamples = RootExamples, RootData = RootData,
        };
    }

    /// <summary>attack: (see Federation.Attacks.AttackOptions).</summary>
    public sealed class AttackSection
    {
        /// <summary>sign-flip, scale, gaussian, label-flip or backdoor.</summary>
        public string Kind { get; set; } = "sign-flip";
        public double Fraction { get; set; } = 0.2;
        public double ScaleFactor { get; set; } = 10;
        public string Trigger { get; set; } = "cf";
        public string TargetAnswer { get; set; } = "positive";
        public double PoisonFraction { get; set; } = 0.5;

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

        public PersonalizationOptions ToOptions() => new() { FinetuneSteps = FinetuneSteps, LocalOnly = LocalOnly };
    }

    public sealed class DpoSection
    {
        /// <summary>DPO's β (OpenFedLLM and TRL: 0.1).</summary>
        public double Beta { get; set; } = 0.1;

        /// <summary>A frozen PEFT adapter (typically the SFT adapter) that is both the reference policy and the starting
        /// point; null = the base model with adapters off is the reference and training starts from a fresh adapter.</summary>
        public string? ReferenceAdapter { get; set; }
    }

    public sealed class LoraSection
    {
        /// <summary>Rank and alpha left out take the task's defaults (<see cref="TaskDefaults"/>: 32/64 for SFT, 8/16 for DPO).</summary>
        public int? R { get; set; }
        public double? Alpha { get; set; }
        public double Dropout { get; set; } = 0.05;
        public List<string> TargetModules { get; set; } = new() { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" };

        /// <summary>Each client's rank budget, one per client (heterogeneous ranks; at most r); empty = all train rank r.</summary>
        public List<int> RankPerClient { get; set; } = new();

        /// <summary>Log ‖avg(B)·avg(A) − avg(B·A)‖/‖avg(B·A)‖ every round (metrics.jsonl aggregation_metrics).</summary>
        public bool LogProductError { get; set; }

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
        public string? Data { get; set; }
        public int Every { get; set; } = 1;
        public int Limit { get; set; }
        public int FewShot { get; set; }
        public int BatchSize { get; set; } = 8;
        public int? MaxNewTokens { get; set; }

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

    /// <summary>Reads run.yaml; an unknown key or a value of the wrong type is an error naming the file, line and key.</summary>
    public static RunConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: config file not found", path);
        var deserializer = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build();
        try
        {
            var config = deserializer.Deserialize<RunConfig>(File.ReadAllText(path)) ?? new RunConfig();
            Quantization.BasePrecisionNames.Parse(config.Model.BaseDtype, $"{path}: model.base_dtype"); // fail at load, naming the key
            return config;
        }
        catch (YamlException e)
        {
            string detail = e.InnerException?.Message ?? e.Message;
            throw new InvalidDataException($"{path}: line {e.Start.Line}, column {e.Start.Column}: {detail}", e);
        }
    }

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
            Algorithms = ResolvedAlgorithms(),
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
            Baselines = Baselines,
            Output = Output ?? defaultOutput,
            Privacy = Privacy?.ToOptions(),
            Robust = Robust?.ToOptions(),
            Attack = Attack?.ToOptions(),
        };
    }

    /// <summary>The settings of <c>fedllm simulate</c> without a configuration: the embedded default model and data, every
    /// algorithm and both baselines, a few minutes on 2 cores; <paramref name="task"/> is "sft" or "dpo".</summary>
    public static RunConfig EmbeddedDefault(string task) => task switch
    {
        "sft" => EmbeddedDefaultSft(),
        "dpo" => EmbeddedDefaultDpo(),
        _ => throw new ArgumentException($"task '{task}': expected sft or dpo"),
    };

    /// <summary>The embedded default: a few minutes on 2 cores, every algorithm and both baselines.</summary>
    static RunConfig EmbeddedDefaultSft() => new()
    {
        Federation = new FederationSection
        {
            Rounds = 12, Clients = 10, ClientsPerRound = 2, LocalSteps = 10, BatchSize = 16, LearningRate = 2e-3, MinLearningRate = 1e-4,
            EvaluateEvery = 4,
        },
        Data = new DataSection { Partition = "dirichlet", Alpha = 0.5, EvalLimit = 120 },
        Lora = new LoraSection { R = 16, Alpha = 32, Dropout = 0 },
        // The FedOpt server rates tuned per algorithm over {0.003, 0.01, 0.03} on this data, as Reddi et al. tune η
        // (held-out loss: FedAdagrad 31.7 / 2.23 / 0.65, FedYogi 0.71 / 0.78 / 2.90, FedAdam 0.82 / 0.78 / 1.10); the
        // papers' η = 1e-3 barely moves the adapter in 12 rounds. FedAvgM keeps η_s = 1.
        Strategy = new StrategySection
        {
            Algorithms = new() { "all" },
            ServerLearningRates = new() { ["fedadagrad"] = 0.03, ["fedyogi"] = 0.003, ["fedadam"] = 0.01 },
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

    public static readonly string[] AllAlgorithms = { "fedavg", "fedprox", "scaffold", "fedavgm", "fedadagrad", "fedyogi", "fedadam" };

    public IReadOnlyList<string> ResolvedAlgorithms() =>
        Strategy.Algorithms.Any(a => a.Equals("all", StringComparison.OrdinalIgnoreCase)) ? AllAlgorithms : Strategy.Algorithms;
}
