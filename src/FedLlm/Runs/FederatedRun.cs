using FedLlm.Alignment;
using FedLlm.Defaults;
using FedLlm.Data;
using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Async;
using FedLlm.Federation.Attacks;
using FedLlm.Federation.LowRank;
using FedLlm.Federation.Personalization;
using FedLlm.Federation.Robust;
using FedLlm.Federation.SecureAggregation;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using FedLlm.Io;
using FedLlm.Privacy;
using FedLlm.Training;
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
    readonly RunFingerprint fingerprint;

    readonly NoiseSeeding seeding;
    readonly Dictionary<string, TorchSharp.torch.Tensor> initialAdapter;
    PersonalEvaluation? personalEvaluation;
    readonly SftClientDataset? rootSet;

    FederatedRun(RunOptions options, AlgorithmRegistry algorithms, string modelDirectory, LlamaForCausalLM model, ITextTokenizer tokenizer,
        LoraOptions lora, ReferencePolicy? reference, RunData data, int threads, PrivacyPlan? privacy, NoiseSeeding seeding, SftClientDataset? rootSet, RunFingerprint fingerprint)
    {
        this.fingerprint = fingerprint;
        PrivacyPlan = privacy;
        this.seeding = seeding;
        this.rootSet = rootSet;
        Options = options;
        Algorithms = algorithms;
        ModelDirectory = modelDirectory;
        Model = model;
        Tokenizer = tokenizer;
        Lora = lora;
        this.reference = reference;
        Data = data;
        Threads = threads;
        initialAdapter = AdapterTensors.Snapshot(model);
        runner = new SimulationRunner(model, options.Federation, lora, data.Evaluate, Modeling.ModelName.Of(modelDirectory), tokenizer.PadTokenId ?? 0,
            options.RoundTask?.Create(), tokenizer, algorithms);
    }

    /// <summary>The algorithms and client hooks a run uses by default: the seven built-in ones and the DP client hooks.</summary>
    public static AlgorithmRegistry DefaultAlgorithms { get; } = LowRankAlgorithms.With(PersonalizationAlgorithms.With(DifferentialPrivacy.WithClientHooks(StrategyFactory.BuiltIn)));

    /// <summary>The settled privacy side of the run (σ, q, δ, rounds within budget), or null without DP.</summary>
    public PrivacyPlan? PrivacyPlan { get; }

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

    /// <summary>Wraps the in-process clients of each federated run (a dashboard's monitor); null = none.</summary>
    public Func<IClientExecutor, IClientExecutor>? ClientDecorator
    {
        get => runner.ClientDecorator;
        set => runner.ClientDecorator = value;
    }

    /// <summary>Validates <paramref name="options"/> (all failures at once), then loads the model, the data and the
    /// evaluation of a simulated run.</summary>
    /// <param name="algorithms">Algorithms and client hooks by name; null = the seven built-in ones.</param>
    /// <param name="log">Told what is built on first use (the embedded default), or null.</param>
    /// <param name="options">The run's typed options (<see cref="RunConfig.ToRunOptions"/> builds them from
    /// run.yaml).</param>
    /// <param name="cancellationToken">Cancels the loading (of the data, mostly).</param>
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
        algorithms = LowRankAlgorithms.With(PersonalizationAlgorithms.With(DifferentialPrivacy.WithClientHooks(algorithms ?? StrategyFactory.BuiltIn)));
        if (options.Attack is { PoisonsData: false })
            algorithms = ModelPoisoningHooks.All.Where(h => !algorithms.HookNames.Contains(h.Name)).Aggregate(algorithms, (r, h) => r.With(h));
        options.Validate(algorithms);
        var privacy = options.Privacy is { } dp ? Privacy.PrivacyPlan.Create(dp, options.Federation) : null;
        // A budget that runs out before the last round ends the run there; the schedule still spans every round.
        if (privacy?.StopAfterRounds is { } stop) options = options with { Federation = options.Federation with { StopAfterRounds = stop } };
        // Simulation noise is reproducible from the run seed; a server's must be unpredictable.
        var seeding = options.Privacy?.Seeding ?? (trainingData ? NoiseSeeding.RunSeed : NoiseSeeding.Cryptographic);
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
            var rootSet = options.Robust is { Rule: RobustRule.FlTrust } robust ? RootSet(options, robust, data, tokenizer) : null;
            var fingerprint = Fingerprint(options, modelDir, lora, defaults, trainingData);
            return new FederatedRun(options, algorithms, modelDir, model, tokenizer, lora, reference, data, threads, privacy, seeding, rootSet, fingerprint);
        }
        catch
        {
            data?.Dispose();
            reference?.Dispose();
            model.Dispose();
            throw;
        }
    }

    /// <summary>What determines <paramref name="algorithm"/>'s run: the model, the data files' hashes, the task and every
    /// hyper-parameter, the seed and the algorithm with its server options (see <see cref="RunFingerprint"/>).</summary>
    public RunFingerprint FingerprintOf(string algorithm) =>
        fingerprint.With("algorithm", algorithm).WithProperties("strategy", Options.StrategyOptionsFor(algorithm));

    static RunFingerprint Fingerprint(RunOptions options, string modelDir, LoraOptions lora, EmbeddedDefaultFiles? defaults, bool trainingData)
    {
        bool dpo = options.Objective.IsDpo;
        string? train = trainingData ? options.Data.TrainPath ?? (dpo ? defaults?.PreferenceTrainPath : defaults?.TrainPath) : null;
        string? eval = options.Data.EvalPath ?? (defaults?.EvalPath is null ? null : dpo ? defaults.PreferenceEvalPath : defaults.EvalPath);
        return RunFingerprint.Empty
            .WithModel("model", modelDir)
            .With("model.base_weights", options.BaseWeights)
            .WithData("data.train_sha256", train)
            .WithData("data.eval_sha256", eval)
            .WithData("dpo.reference_adapter_sha256", options.ReferenceAdapter)
            .WithProperties("data", options.Data, nameof(RunDataOptions.TrainPath), nameof(RunDataOptions.EvalPath))
            .WithProperties("lora", lora)
            // Everything else of the options, so a setting added later is covered without editing this list; left out:
            // what does not change the result (where it is written, threads, device, activation recomputation), what is
            // covered above (paths as hashes, the adapter layout actually used) or per algorithm (FingerprintOf).
            .WithProperties("run", options, nameof(RunOptions.Output), nameof(RunOptions.Threads), nameof(RunOptions.Device),
                nameof(RunOptions.ActivationCheckpointing), nameof(RunOptions.Algorithms), nameof(RunOptions.Baselines),
                nameof(RunOptions.ServerLearningRates), nameof(RunOptions.Strategy), nameof(RunOptions.ModelPath),
                nameof(RunOptions.ReferenceAdapter), nameof(RunOptions.Data), nameof(RunOptions.Lora), nameof(FederationOptions.ClientTraining));
    }

    /// <summary>Runs <paramref name="algorithm"/> with in-process clients into Output/{algorithm}.</summary>
    public Task<RunOutcome> RunAsync(string algorithm, bool resume = false, IProgress<RoundRecord>? progress = null, CancellationToken cancellationToken = default)
    {
        if (Data.Shards.Count == 0) throw new InvalidOperationException("this run was prepared for a server and holds no training data");
        return RunAsync(algorithm, executor: null, Path.Combine(Options.Output, algorithm), resume, progress, cancellationToken);
    }

    /// <summary>Runs FedBuff (<c>fedbuff</c>) with <paramref name="clients"/> finishing in real time (the network server)
    /// into <paramref name="output"/>; async: settings from the run's options (defaults when it has none).</summary>
    public async Task<RunOutcome> RunBufferedAsync(IAsyncClientPool clients, string output, bool resume, IProgress<RoundRecord>? progress = null,
        Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        using var held = RunDirectoryLock.Acquire(output);
        var own = FingerprintOf(BufferedAsyncServer.AlgorithmName);
        if (resume && new RunStore(output).LatestRound is not null) own.CheckAndRecord(output);
        else own.Write(output);
        return await runner.RunBufferedAsync(Options.Async ?? new AsyncOptions(), clients, output, resume, progress, log, cancellationToken);
    }

    /// <summary>Runs <paramref name="algorithm"/> with <paramref name="executor"/>'s clients (null = in process) into
    /// <paramref name="output"/>: the round loop both <c>simulate</c> and <c>server</c> use.</summary>
    public async Task<RunOutcome> RunAsync(string algorithm, IClientExecutor? executor, string output, bool resume,
        IProgress<RoundRecord>? progress = null, CancellationToken cancellationToken = default)
    {
        var outcome = await RunRoundsAsync(algorithm, executor, output, resume, progress, cancellationToken);
        // Attacks are simulated: in process, the run knows who attacks; over the network nobody does.
        if (executor is null && Options.Attack is { } attack)
            outcome = outcome with
            {
                Attack = new RunAttack(AttackOptions.Name(attack.Kind), attack.Fraction, RunData.AttackersOf(Options).Order().Select(InProcessClients.ClientId).ToList()),
            };
        return outcome;
    }

    async Task<RunOutcome> RunRoundsAsync(string algorithm, IClientExecutor? executor, string output, bool resume,
        IProgress<RoundRecord>? progress, CancellationToken cancellationToken)
    {
        using var held = RunDirectoryLock.Acquire(output);
        // Record what determines this run before its first commit; continuing a committed run with other settings is refused.
        var own = FingerprintOf(algorithm);
        if (resume && new RunStore(output).LatestRound is not null) own.CheckAndRecord(output);
        else own.Write(output);
        if (algorithm == BufferedAsyncServer.AlgorithmName)
        {
            if (executor is not null)
                throw new NotSupportedException("fedbuff over clients that finish in real time runs through RunBufferedAsync(IAsyncClientPool, …), not a round executor (docs/unequal-participants.md)");
            return await runner.RunBufferedAsync(Options.Async ?? new AsyncOptions(), Data.Shards, output, resume, progress, cancellationToken);
        }
        var strategy = Decorate(Algorithms.Create(algorithm, Options.StrategyOptionsFor(algorithm)));
        // Clients that hold their own data (the network) score their adapters themselves, on the evaluation path.
        if (executor is not null && Options.Personalization is not null)
            strategy = new PersonalEvaluationOnClients(strategy, Options.FederatedEvaluateEvery, Options.Federation.Rounds, PersonalHookName(algorithm));
        // Beside FedBuff, a synchronous round takes as long as its slowest sampled client on the same virtual clock.
        if (executor is null && Options.Async is { } timing)
            strategy = new SynchronousVirtualTime(strategy, Options.Federation, timing.SpeedsFor(Options.Federation.TotalClients));
        try
        {
            if (executor is null && (Options.Attack is { PoisonsData: false } || Options.SecureAggregation is not null))
            {
                IClientExecutor clients = new InProcessClients(Model, Options.Federation, Data.Shards, Tokenizer.PadTokenId ?? 0, Algorithms);
                // Model-poisoning attackers run the attack's client hook on top of honest training.
                if (Options.Attack is { PoisonsData: false } attack)
                    clients = new AttackingClients(clients, attack, RunData.AttackersOf(Options), Options.Federation.Seed);
                if (Options.SecureAggregation is not null) clients = new SecureAggregationClients(clients);
                try
                {
                    return await runner.RunFederatedAsync(strategy, clients, output, resume, progress, cancellationToken);
                }
                finally
                {
                    (clients as IDisposable)?.Dispose();
                }
            }
            if (executor is null && Options.Personalization is not null)
            {
                using var clients = new InProcessClients(Model, Options.Federation, Data.Shards, Tokenizer.PadTokenId ?? 0, Algorithms);
                var outcome = await runner.RunFederatedAsync(strategy, clients, output, resume, progress, cancellationToken);
                return outcome with { Personal = EvaluatePersonal(algorithm, output, clients) };
            }
            return executor is null
                ? await runner.RunFederatedAsync(strategy, Data.Shards, output, resume, progress, cancellationToken)
                : await runner.RunFederatedAsync(strategy, executor, output, resume, progress, cancellationToken);
        }
        finally
        {
            (strategy as IDisposable)?.Dispose();
        }
    }

    /// <summary>Each client's global and personal adapters scored on its own held-out split, after the run into
    /// <paramref name="output"/> (its final global adapter is read back from output/adapter).</summary>
    PersonalScores EvaluatePersonal(string algorithm, string output, IClientExecutor clients)
    {
        personalEvaluation ??= new PersonalEvaluation(Model, Options, Data, initialAdapter);
        AdapterIO.Load(Path.Combine(output, "adapter"), Model);
        var global = AdapterTensors.Snapshot(Model);
        var personal = PersonalHookName(algorithm) is { } name ? (IPersonalizedClientHooks)Algorithms.Hook(name) : null;
        try
        {
            return personalEvaluation.Evaluate(global, personal, clients.SnapshotState());
        }
        finally
        {
            AdapterTensors.Dispose(global);
        }
    }

    /// <summary>The name of <paramref name="algorithm"/>'s client hook that keeps a personal adapter
    /// (<see cref="IPersonalizedClientHooks"/>), or null when it keeps none.</summary>
    string? PersonalHookName(string algorithm)
    {
        var instructions = Algorithms.Create(algorithm, Options.StrategyOptionsFor(algorithm)).ConfigureTrain(0, Options.Federation.LearningRate);
        instructions.DisposeTensors();
        return instructions.Hooks.FirstOrDefault(h => Algorithms.Hook(h) is IPersonalizedClientHooks);
    }

    /// <summary>The algorithm's strategy with the run's robust rule around it, its DP mechanism (with accounting) around
    /// that, and secure aggregation outermost; the algorithm itself is unchanged.</summary>
    public IFederatedStrategy Decorate(IFederatedStrategy strategy)
    {
        ArgumentNullException.ThrowIfNull(strategy);
        var federation = Options.Federation;
        if (Options.FederatedEvaluateEvery > 0) strategy = new EvaluateOnClients(strategy, Options.FederatedEvaluateEvery, federation.Rounds);
        strategy = new PayloadAccounting(strategy);
        if (Options.LogLoraProductError) strategy = new ProductErrorLogging(strategy);
        if (Options.Robust is { } robust)
            strategy = new RobustAggregation(strategy, robust.Create(Math.Min(federation.ClientsPerRound, federation.TotalClients), RootUpdate,
                NoiseSource.Create(seeding, federation.Seed)));
        if (Options.Privacy is { } privacy)
            strategy = DifferentialPrivacy.Wrap(strategy, privacy, PrivacyPlan!, seeding, federation.Seed);
        // Outermost: it hands the DP mechanism (or the algorithm) the secure aggregate in place of the updates.
        if (Options.SecureAggregation is { } secure)
            strategy = new SecureAggregationStrategy(strategy, secure, Math.Min(federation.ClientsPerRound, federation.TotalClients));
        return strategy;
    }

    /// <summary>FLTrust's Δ₀: the server trains the global adapter on its root set as a client would in this round
    /// (same local steps, batch and learning rate), and returns the change.</summary>
    IReadOnlyDictionary<string, TorchSharp.torch.Tensor> RootUpdate(int round, IReadOnlyDictionary<string, TorchSharp.torch.Tensor> global)
    {
        var federation = Options.Federation;
        AdapterTensors.Load(Model, global);
        var training = new TrainingOptions
        {
            MaxSteps = federation.LocalSteps, BatchSize = federation.BatchSize, GradientAccumulationSteps = federation.GradientAccumulationSteps,
            LearningRate = RoundSchedule.LearningRate(round, federation), Schedule = LearningRateScheduleKind.Constant,
            MaxGradNorm = federation.MaxGradNorm, MaxSequenceLength = federation.MaxSequenceLength,
            Seed = RoundSchedule.LocalSeed(round, -1, federation.Seed),
        };
        using (var run = rootSet!.StartRun(Model, training)) run.Train();
        var trained = AdapterTensors.Snapshot(Model);
        try
        {
            return TensorMaps.Difference(trained, global);
        }
        finally
        {
            AdapterTensors.Dispose(trained);
        }
    }

    /// <summary>FLTrust's root set: robust.root_data's first examples, or (simulation) a seeded sample of the honest
    /// clients' training data, i.e. of the embedded default's when no data is given.</summary>
    static SftClientDataset RootSet(RunOptions options, RobustOptions robust, RunData data, ITextTokenizer tokenizer)
    {
        int padId = tokenizer.PadTokenId ?? 0;
        if (robust.RootData is { } path)
        {
            var builder = new SftExampleBuilder(tokenizer, PromptTemplate.FromName(options.Data.Template), options.Federation.MaxSequenceLength);
            var examples = AlpacaReader.ReadAll(path).Examples.Take(robust.RootExamples).Select(builder.Build).ToList();
            if (examples.Count == 0) throw new InvalidDataException($"robust.root_data {path}: no examples");
            return new SftClientDataset(examples, padId);
        }
        if (data.Shards.Count == 0) throw new ArgumentException("robust.rule fltrust on a server needs robust.root_data (the server's own clean examples)");
        var attackers = RunData.AttackersOf(options);
        var honest = data.Shards.Select((s, i) => (s, i)).Where(p => !attackers.Contains(p.i)).SelectMany(p => ((SftClientDataset)p.s).Examples).ToArray();
        new Random(unchecked((int)(options.Federation.Seed * 13 + 0x700))).Shuffle(honest);
        return new SftClientDataset(honest.Take(robust.RootExamples).ToList(), padId);
    }

    /// <summary>
    /// Runs the baseline <paramref name="name"/> into Output/{name}: "local" (every client alone) and "central" (the pooled
    /// data) as 1-client federations with the federated clients' recipe and step budget; "local-continuous" and
    /// "central-continuous" the same budget as one continuous AdamW run with a per-step cosine.
    /// </summary>
    /// <param name="progress">Told each committed round of a federated baseline, with the client's index (local) or 0.</param>
    /// <param name="name">local, central, local-continuous or central-continuous.</param>
    /// <param name="resume">Continue from the baseline's last committed round in its folder, if any.</param>
    /// <param name="cancellationToken">Stops the baseline after its current step; committed rounds stay on
    /// disk.</param>
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
    /// <param name="resume">Continue each algorithm and baseline from its last committed round, if any.</param>
    /// <param name="cancellationToken">Stops the run after its current step; committed rounds stay on disk.</param>
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
        AdapterTensors.Dispose(initialAdapter);
        Model.Dispose();
    }

    sealed class SynchronousProgress(Action<RoundRecord> report) : IProgress<RoundRecord>
    {
        public void Report(RoundRecord value) => report(value);
    }
}
