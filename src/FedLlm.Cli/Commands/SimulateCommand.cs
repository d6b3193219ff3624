using System.ComponentModel;
using FedLlm.Data;
using FedLlm.Data.Partitioning;
using FedLlm.Defaults;
using FedLlm.Federation;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using FedLlm.Modeling;
using FedLlm.Quantization;
using FedLlm.Peft;
using FedLlm.Runtime;
using FedLlm.Tokenization;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace FedLlm.Cli.Commands;

public sealed class SimulateSettings : CommandSettings
{
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
    [CommandOption("--server-lr <X>")] public double? ServerLearningRate { get; init; }
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
    [CommandOption("--resume")][Description("Continue each algorithm from its last committed round in --output")] public bool Resume { get; init; }
}

/// <summary><c>fedllm simulate</c>: federated instruction tuning of many clients in one process, with baselines.</summary>
public sealed class SimulateCommand : Command<SimulateSettings>
{
    public override int Execute(CommandContext context, SimulateSettings s, CancellationToken cancellationToken)
    {
        var config = s.Config is null ? EmbeddedDefaultSimulation() : SimulationConfig.Load(s.Config);
        Apply(config, s);
        int threads = TorchRuntime.ConfigureThreads(config.Threads);
        var device = TorchRuntime.ParseDevice(config.Device);
        var defaults = config.Model.Path is null || config.Data.Path is null ? EmbeddedDefault.Ensure(m => AnsiConsole.MarkupLineInterpolated($"[grey]{m}[/]")) : null;
        string modelDir = config.Model.Path ?? defaults!.ModelDirectory;
        string dataPath = config.Data.Path ?? defaults!.TrainPath;
        string? evalPath = config.Data.EvalPath ?? defaults?.EvalPath;
        string output = config.Output ?? Path.Combine("runs", $"simulate-{DateTime.Now:yyyyMMdd-HHmmss}");
        var options = config.Federation.ToOptions();
        options.Validate();
        var lora = new LoraOptions { Rank = config.Lora.R, Alpha = config.Lora.Alpha, Dropout = config.Lora.Dropout, TargetModules = config.Lora.TargetModules };
        lora.Validate();
        var template = PromptTemplate.FromName(config.Data.Template);
        var algorithms = config.ResolvedAlgorithms();
        var strategyOptions = StrategyOptionsFrom(config, options);
        foreach (var name in algorithms) StrategyFactory.Create(name, strategyOptions); // unknown names fail before any work

        var tokenizer = TokenizerLoader.Load(modelDir);
        using var model = ModelLoader.Load(modelDir, BaseWeights.Parse(config.Model.BaseDtype, "model.base_dtype / --base-dtype"), device);
        model.ActivationCheckpointing = config.Model.ActivationCheckpointing;
        var read = AlpacaReader.ReadAll(dataPath, new AlpacaReadOptions { SkipBad = config.Data.SkipBad });
        var heldOut = evalPath is null ? null : AlpacaReader.ReadAll(evalPath).Examples.Take(config.Data.EvalLimit ?? int.MaxValue).ToList();
        var builder = new SftExampleBuilder(tokenizer, template, options.MaxSequenceLength);
        // The label of an instruction example is its response (the sentiment of the embedded default); Dirichlet
        // skews each client's label mix, as the non-IID experiments of the FL literature do.
        var partitioner = new PartitionOptions { Kind = PartitionOptions.ParseKind(config.Data.Partition), Alpha = config.Data.Alpha }.Create();
        var labels = read.Examples.Select(e => (string?)e.Response.Trim()).ToList();
        var partition = partitioner.Partition(labels, options.TotalClients, (ulong)options.Seed);
        var shards = Enumerable.Range(0, options.TotalClients)
            .Select(c => (IReadOnlyList<SftExample>)partition.Select(read.Examples, c).Select(builder.Build).ToList()).ToList();

        AnsiConsole.MarkupLineInterpolated($"[bold]FedLlm simulate[/]  {options.TotalClients} clients ({config.Data.Partition}{(config.Data.Partition == "dirichlet" ? $" α={config.Data.Alpha}" : "")}, sizes {string.Join(" ", shards.Select(x => x.Count))}), {options.ClientsPerRound} per round, {options.Rounds} rounds × {options.LocalSteps} local steps × batch {options.BatchSize}; lr {options.LearningRate} → {options.MinLearningRate}; LoRA r={lora.Rank}; {threads} threads");
        LoraInjector.Inject(model, lora, new Generator((ulong)options.Seed));
        var runner = new SimulationRunner(model, tokenizer, template, options, lora, heldOut, Path.GetFullPath(modelDir));
        long baselineRss = TorchRuntime.PeakResidentBytes() ?? 0;

        var outcomes = new List<SimulationOutcome>();
        foreach (var name in algorithms)
        {
            var strategy = StrategyFactory.Create(name, strategyOptions);
            AnsiConsole.Progress().AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask(name, maxValue: options.Rounds);
                    var outcome = runner.RunFederatedAsync(strategy, shards, Path.Combine(output, name), config.Output is not null && s.Resume,
                        new SynchronousProgress<RoundRecord>(r =>
                        {
                            task.Value = r.Round + 1;
                            task.Description = $"{name} round {r.Round + 1}/{options.Rounds} loss {r.ClientLoss.Values.Average():F3}" +
                                (r.EvalScore is { } score ? $" held-out {score:P0}" : "");
                        }), cancellationToken).GetAwaiter().GetResult();
                    outcomes.Add(outcome);
                });
        }
        foreach (var baseline in config.Baselines)
        {
            AnsiConsole.MarkupLineInterpolated($"baseline [cyan]{baseline}[/]…");
            outcomes.Add(baseline switch
            {
                "local" => runner.RunLocalOnly(shards, maxClients: Math.Min(options.TotalClients, 2)),
                "central" => runner.RunCentralized(shards),
                _ => throw new ArgumentException($"unknown baseline '{baseline}' (local, central)"),
            });
        }

        var table = new Table().AddColumns("run", "held-out loss", "held-out exact match", "seconds");
        foreach (var o in outcomes)
            table.AddRow(o.Name, o.Final is null ? "-" : $"{o.Final.Loss:F4}", o.Final is null ? "-" : $"{o.Final.Score:P1}", $"{o.Seconds:F0}");
        AnsiConsole.Write(table);
        ResultsReport.Write(output, outcomes);
        AnsiConsole.MarkupLineInterpolated($"outputs in [cyan]{output}[/] (per algorithm: metrics.jsonl, rounds/round-N adapters, adapter/); peak RSS {TorchRuntime.PeakResidentBytes() / (1024.0 * 1024):F0} MiB (after loading: {baselineRss / (1024.0 * 1024):F0} MiB)");
        return 0;
    }

    /// <summary>The embedded default: a few minutes on 2 cores, every algorithm and both baselines.</summary>
    static SimulationConfig EmbeddedDefaultSimulation() => new()
    {
        Federation = new SimulationConfig.FederationSection
        {
            Rounds = 12, Clients = 10, ClientsPerRound = 2, LocalSteps = 10, BatchSize = 16, LearningRate = 2e-3, MinLearningRate = 1e-4,
            EvaluateEvery = 4,
        },
        Data = new SimulationConfig.DataSection { Partition = "dirichlet", Alpha = 0.5, EvalLimit = 120 },
        Lora = new SimulationConfig.LoraSection { R = 16, Alpha = 32, Dropout = 0 },
        Strategy = new SimulationConfig.StrategySection { Algorithms = new() { "all" }, ServerLearningRate = null },
        Baselines = new() { "local", "central" },
    };

    static void Apply(SimulationConfig c, SimulateSettings s)
    {
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
        if (s.Clients is not null) c.Federation.Clients = s.Clients.Value;
        if (s.ClientsPerRound is not null) c.Federation.ClientsPerRound = s.ClientsPerRound.Value;
        if (s.LocalSteps is not null) c.Federation.LocalSteps = s.LocalSteps.Value;
        if (s.BatchSize is not null) c.Federation.BatchSize = s.BatchSize.Value;
        if (s.GradientAccumulation is not null) c.Federation.GradientAccumulation = s.GradientAccumulation.Value;
        if (s.LearningRate is not null) c.Federation.LearningRate = s.LearningRate.Value;
        if (s.MinLearningRate is not null) c.Federation.MinLearningRate = s.MinLearningRate.Value;
        if (s.KeepOptimizerState is not null) c.Federation.KeepOptimizerState = s.KeepOptimizerState.Value;
        if (s.Seed is not null) c.Federation.Seed = s.Seed.Value;
        if (s.Mu is not null) c.Strategy.ProximalMu = s.Mu;
        if (s.ServerLearningRate is not null) c.Strategy.ServerLearningRate = s.ServerLearningRate;
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
        if (s.LoraRank is not null) c.Lora.R = s.LoraRank.Value;
        if (s.LoraAlpha is not null) c.Lora.Alpha = s.LoraAlpha.Value;
        if (s.Baselines is not null) c.Baselines = s.Baselines == "none" ? new() : s.Baselines.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        if (s.Threads is not null) c.Threads = s.Threads;
        if (s.Device is not null) c.Device = s.Device;
        if (s.Output is not null) c.Output = s.Output;
    }

    static StrategyOptions StrategyOptionsFrom(SimulationConfig c, FederationOptions options)
    {
        var defaults = new StrategyOptions();
        return new StrategyOptions
        {
            ProximalMu = c.Strategy.ProximalMu ?? defaults.ProximalMu,
            ServerLearningRate = c.Strategy.ServerLearningRate,
            ServerMomentum = c.Strategy.ServerMomentum ?? defaults.ServerMomentum,
            Beta1 = c.Strategy.Beta1 ?? defaults.Beta1,
            Beta2 = c.Strategy.Beta2 ?? defaults.Beta2,
            Tau = c.Strategy.Tau ?? defaults.Tau,
            TotalClients = options.TotalClients,
            OpenFedLlmCompatible = c.Strategy.OpenfedllmCompatible,
        };
    }
}
