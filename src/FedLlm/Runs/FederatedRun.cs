using FedLlm.Alignment;
using FedLlm.Defaults;
using FedLlm.Federation;
using FedLlm.Federation.Strategies;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Runtime;
using FedLlm.Tokenization;
using static TorchSharp.torch;

namespace FedLlm.Runs;

/// <summary>
/// A federated run from one <see cref="RunOptions"/>: the entry point for .NET code, and what <c>fedllm simulate</c> and
/// <c>fedllm server</c> are thin shells around. <see cref="Prepare"/> loads the model, injects LoRA, reads and splits
/// the data and sets up evaluation; <see cref="RunAsync(string, bool, IProgress{RoundRecord}?, CancellationToken)"/>
/// runs one algorithm with in-process clients, <see cref="RunAllAsync"/> every configured algorithm and baseline.
/// </summary>
/// <example>
/// <code>
/// using var run = FederatedRun.Prepare(new RunOptions { Federation = new() { Rounds = 3, TotalClients = 4 } });
/// var outcome = await run.RunAsync("fedavg");
/// Console.WriteLine(outcome.Final);
/// </code>
/// </example>
public sealed class FederatedRun : IDisposable
{
    readonly ReferencePolicy? reference;
    readonly SimulationRunner runner;

    FederatedRun(RunOptions options, AlgorithmRegistry algorithms, string modelDirectory, LlamaForCausalLM model, ITextTokenizer tokenizer,
        LoraOptions lora, ReferencePolicy? reference, RunData data, int threads)
    {
        Options = options;
        Algorithms = algorithms;
        ModelDirectory = modelDirectory;
        Model = model;
        Tokenizer = tokenizer;
        Lora = lora;
        this.reference = reference;
        Data = data;
        Threads = threads;
        runner = new SimulationRunner(model, options.Federation, lora, data.Evaluate, Path.GetFullPath(modelDirectory), tokenizer.PadTokenId ?? 0,
            options.RoundTask?.Create(), tokenizer, algorithms);
    }

    /// <summary>The validated options.</summary>
    public RunOptions Options { get; }

    /// <summary>Where algorithm names and client hooks are looked up.</summary>
    public AlgorithmRegistry Algorithms { get; }

    /// <summary>The base model's folder (the embedded default's when none was given).</summary>
    public string ModelDirectory { get; }

    /// <summary>The shared base model with LoRA injected (its adapter is every run's starting point).</summary>
    public LlamaForCausalLM Model { get; }

    /// <summary>The model's tokenizer.</summary>
    public ITextTokenizer Tokenizer { get; }

    /// <summary>The adapter layout actually used (a DPO reference adapter's when one is given).</summary>
    public LoraOptions Lora { get; }

    /// <summary>The clients' data and the held-out evaluation.</summary>
    public RunData Data { get; }

    /// <summary>Intra-op threads in use.</summary>
    public int Threads { get; }

    /// <summary>Whether the last run continued from a committed round.</summary>
    public bool Resumed => runner.Resumed;

    /// <summary>Validates <paramref name="options"/> (all failures at once), then loads the model, the data and the
    /// evaluation of a simulated run.</summary>
    /// <param name="algorithms">Algorithms and client hooks by name; null = the seven built-in ones.</param>
    /// <param name="log">Told what is built on first use (the embedded default), or null.</param>
    public static FederatedRun Prepare(RunOptions options, AlgorithmRegistry? algorithms = null, Action<string>? log = null,
        CancellationToken cancellationToken = default) =>
        Create(options, algorithms, log, trainingData: true, cancellationToken);

    /// <summary>As <see cref="Prepare"/> for a federation server: the model and the held-out evaluation, no training data
    /// (the clients hold it).</summary>
    public static FederatedRun PrepareServer(RunOptions options, AlgorithmRegistry? algorithms = null, Action<string>? log = null,
        CancellationToken cancellationToken = default) =>
        Create(options, algorithms, log, trainingData: false, cancellationToken);

    static FederatedRun Create(RunOptions options, AlgorithmRegistry? algorithms, Action<string>? log, bool trainingData, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        algorithms ??= StrategyFactory.BuiltIn;
        options.Validate(algorithms);
        int threads = TorchRuntime.ConfigureThreads(options.Threads);
        var device = TorchRuntime.ParseDevice(options.Device);
        bool needsDefault = options.ModelPath is null || (trainingData && options.Data.TrainPath is null);
        var defaults = needsDefault ? EmbeddedDefault.Ensure(m => log?.Invoke(m)) : null;
        // The embedded held-out set belongs to the embedded model; with another model there is no default held-out data.
        if (options.ModelPath is not null && options.Data.EvalPath is null) defaults = defaults is null ? null : defaults with { EvalPath = null! };
        string modelDir = options.ModelPath ?? defaults!.ModelDirectory;

        var lora = options.ReferenceAdapter is { } referenceDir ? AdapterIO.ReadOptions(referenceDir) : options.Lora;
        lora.Validate();
        var tokenizer = TokenizerLoader.Load(modelDir);
        var model = ModelLoader.Load(modelDir, options.BaseWeights, device);
        ReferencePolicy? reference = null;
        RunData? data = null;
        try
        {
            model.ActivationCheckpointing = options.ActivationCheckpointing;
            LoraInjector.Inject(model, lora, new Generator((ulong)options.Federation.Seed));
            if (options.ReferenceAdapter is { } dir)
            {
                AdapterIO.Load(dir, model); // the policy starts where the reference is: DPO of an SFT model
                reference = ReferencePolicy.FromAdapterState(AdapterIO.State(model));
            }
            data = trainingData
                ? RunData.Load(options, defaults, model, tokenizer, reference, cancellationToken)
                : RunData.LoadHeldOut(options, defaults, model, tokenizer, reference, cancellationToken);
            return new FederatedRun(options, algorithms, modelDir, model, tokenizer, lora, reference, data, threads);
        }
        catch
        {
            data?.Dispose();
            reference?.Dispose();
            model.Dispose();
            throw;
        }
    }

    /// <summary>Runs <paramref name="algorithm"/> with in-process clients into Output/{algorithm}.</summary>
    public Task<RunOutcome> RunAsync(string algorithm, bool resume = false, IProgress<RoundRecord>? progress = null, CancellationToken cancellationToken = default)
    {
        if (Data.Shards.Count == 0) throw new InvalidOperationException("this run was prepared for a server and holds no training data");
        return RunAsync(algorithm, executor: null, Path.Combine(Options.Output, algorithm), resume, progress, cancellationToken);
    }

    /// <summary>Runs <paramref name="algorithm"/> with <paramref name="executor"/>'s clients (null = in process) into
    /// <paramref name="output"/>: the round loop both <c>simulate</c> and <c>server</c> use.</summary>
    public async Task<RunOutcome> RunAsync(string algorithm, IClientExecutor? executor, string output, bool resume,
        IProgress<RoundRecord>? progress = null, CancellationToken cancellationToken = default)
    {
        var strategy = Algorithms.Create(algorithm, Options.StrategyOptionsFor(algorithm));
        try
        {
            return executor is null
                ? await runner.RunFederatedAsync(strategy, Data.Shards, output, resume, progress, cancellationToken)
                : await runner.RunFederatedAsync(strategy, executor, output, resume, progress, cancellationToken);
        }
        finally
        {
            (strategy as IDisposable)?.Dispose();
        }
    }

    /// <summary>
    /// Runs the baseline <paramref name="name"/> into Output/{name}: "local" (every client alone) and "central" (the pooled
    /// data) as 1-client federations with the federated clients' recipe and step budget; "local-continuous" and
    /// "central-continuous" the same budget as one continuous AdamW run with a per-step cosine.
    /// </summary>
    /// <param name="progress">Told each committed round of a federated baseline, with the client's index (local) or 0.</param>
    public async Task<RunOutcome> RunBaselineAsync(string name, bool resume = false, Action<int, RoundRecord>? progress = null,
        CancellationToken cancellationToken = default)
    {
        if (Data.Shards.Count == 0) throw new InvalidOperationException("this run was prepared for a server and holds no training data");
        string output = Path.Combine(Options.Output, name);
        return name switch
        {
            "local" => await runner.RunLocalOnlyAsync(Data.Shards, output, resume, progress, cancellationToken),
            "central" => await runner.RunCentralizedAsync(Data.Pooled(), output, resume,
                progress is null ? null : new SynchronousProgress(r => progress(0, r)), cancellationToken),
            "local-continuous" => runner.RunLocalContinuous(Data.Shards),
            "central-continuous" => runner.RunCentralContinuous(Data.Pooled()),
            _ => throw new ArgumentException($"unknown baseline '{name}' (known: {string.Join(", ", RunOptions.KnownBaselines)})"),
        };
    }

    /// <summary>Every configured algorithm, then every baseline; writes results.json and rounds.png into Output.</summary>
    /// <param name="progress">Told each committed round with its algorithm's or baseline's name.</param>
    /// <param name="starting">Told the name of each algorithm or baseline as it starts.</param>
    public async Task<IReadOnlyList<RunOutcome>> RunAllAsync(bool resume = false, Action<string, RoundRecord>? progress = null, Action<string>? starting = null,
        CancellationToken cancellationToken = default)
    {
        var outcomes = new List<RunOutcome>();
        foreach (var name in Options.Algorithms)
        {
            starting?.Invoke(name);
            outcomes.Add(await RunAsync(name, resume, progress is null ? null : new SynchronousProgress(r => progress(name, r)), cancellationToken));
        }
        foreach (var baseline in Options.Baselines)
        {
            starting?.Invoke(baseline);
            outcomes.Add(await RunBaselineAsync(baseline, resume, progress is null ? null : (_, r) => progress(baseline, r), cancellationToken));
        }
        ResultsReport.Write(Options.Output, outcomes, Labels);
        return outcomes;
    }

    /// <summary>How reports name this run's held-out scores, and the constant-answer floor.</summary>
    public ReportLabels Labels => new(Data.LossName, Data.ScoreName, Data.ScoreFloor);

    /// <summary>Frees the model, the data's caches and the reference policy.</summary>
    public void Dispose()
    {
        Data.Dispose();
        reference?.Dispose();
        Model.Dispose();
    }

    sealed class SynchronousProgress(Action<RoundRecord> report) : IProgress<RoundRecord>
    {
        public void Report(RoundRecord value) => report(value);
    }
}
