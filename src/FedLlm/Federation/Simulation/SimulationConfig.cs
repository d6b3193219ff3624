using FedLlm.Federation.Strategies;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace FedLlm.Federation.Simulation;

/// <summary>
/// A simulated federated run as written in run.yaml (snake_case keys). Every section is optional; defaults are
/// OpenFedLLM's (see <see cref="FederationOptions"/>), except where the embedded default needs its own.
/// </summary>
public sealed class SimulationConfig
{
    public ModelSection Model { get; set; } = new();
    public DataSection Data { get; set; } = new();
    public FederationSection Federation { get; set; } = new();
    public StrategySection Strategy { get; set; } = new();
    public LoraSection Lora { get; set; } = new();

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

        /// <summary>iid or dirichlet (over the label: the response text unless a column is named).</summary>
        public string Partition { get; set; } = "dirichlet";
        public double Alpha { get; set; } = 0.5;
        public bool SkipBad { get; set; }
    }

    public sealed class FederationSection
    {
        public int Rounds { get; set; } = 200;
        public int Clients { get; set; } = 20;
        public int ClientsPerRound { get; set; } = 2;
        public int LocalSteps { get; set; } = 10;
        public int BatchSize { get; set; } = 16;
        public int GradientAccumulation { get; set; } = 1;
        public double LearningRate { get; set; } = 5e-5;
        public double MinLearningRate { get; set; } = 1e-6;
        public double MaxGradNorm { get; set; } = 1.0;
        public int MaxLength { get; set; } = 512;
        public bool KeepOptimizerState { get; set; }
        public long Seed { get; set; } = 2023;
        public int EvaluateEvery { get; set; } = 1;

        public FederationOptions ToOptions() => new()
        {
            Rounds = Rounds, TotalClients = Clients, ClientsPerRound = ClientsPerRound, LocalSteps = LocalSteps, BatchSize = BatchSize,
            GradientAccumulationSteps = GradientAccumulation, LearningRate = LearningRate, MinLearningRate = MinLearningRate,
            MaxGradNorm = MaxGradNorm, MaxSequenceLength = MaxLength, KeepClientOptimizerState = KeepOptimizerState, Seed = Seed,
            EvaluateEvery = EvaluateEvery,
        };
    }

    public sealed class StrategySection
    {
        /// <summary>One algorithm or several (compared in one table): fedavg fedprox scaffold fedavgm fedadagrad fedyogi fedadam, or "all".</summary>
        public List<string> Algorithms { get; set; } = new() { "fedavg" };
        public double? ProximalMu { get; set; }
        public double? ServerLearningRate { get; set; }
        public double? ServerMomentum { get; set; }
        public double? Beta1 { get; set; }
        public double? Beta2 { get; set; }
        public double? Tau { get; set; }

        /// <summary>Reproduce OpenFedLLM's departures from the papers (see StrategyOptions).</summary>
        public bool OpenfedllmCompatible { get; set; }
    }

    public sealed class LoraSection
    {
        public int R { get; set; } = 32;
        public double Alpha { get; set; } = 64;
        public double Dropout { get; set; } = 0.05;
        public List<string> TargetModules { get; set; } = new() { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" };
    }

    /// <summary>Reads run.yaml; an unknown key or a value of the wrong type is an error naming the file, line and key.</summary>
    public static SimulationConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: config file not found", path);
        var deserializer = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build();
        try
        {
            var config = deserializer.Deserialize<SimulationConfig>(File.ReadAllText(path)) ?? new SimulationConfig();
            Quantization.BasePrecisionNames.Parse(config.Model.BaseDtype, $"{path}: model.base_dtype"); // fail at load, naming the key
            return config;
        }
        catch (YamlException e)
        {
            string detail = e.InnerException?.Message ?? e.Message;
            throw new InvalidDataException($"{path}: line {e.Start.Line}, column {e.Start.Column}: {detail}", e);
        }
    }

    public static readonly string[] AllAlgorithms = { "fedavg", "fedprox", "scaffold", "fedavgm", "fedadagrad", "fedyogi", "fedadam" };

    public IReadOnlyList<string> ResolvedAlgorithms() =>
        Strategy.Algorithms.Any(a => a.Equals("all", StringComparison.OrdinalIgnoreCase)) ? AllAlgorithms : Strategy.Algorithms;
}
