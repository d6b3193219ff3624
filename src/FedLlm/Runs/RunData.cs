using FedLlm.Alignment;
using FedLlm.Data;
using FedLlm.Data.Datasets;
using FedLlm.Data.Partitioning;
using FedLlm.Defaults;
using FedLlm.Evaluation;
using FedLlm.Federation;
using FedLlm.Federation.Attacks;
using FedLlm.Modeling;
using FedLlm.Tokenization;
using FedLlm.Training;

namespace FedLlm.Runs;

/// <summary>
/// The data side of a run, for either objective: each client's dataset (<see cref="IClientDataset"/>), the pooled data
/// of the centralised baseline, and the held-out evaluation of the adapter loaded in the model. Simulation, the server
/// (held-out only) and a network client (its own file) all read data through here.
/// </summary>
public sealed class RunData : IDisposable
{
    readonly Action? dispose;

    RunData(IReadOnlyList<IClientDataset> shards, Func<IClientDataset> pooled, Func<EvaluationResult>? evaluate, string lossName, string scoreName,
        string? description, Action? dispose)
    {
        Shards = shards;
        Pooled = pooled;
        Evaluate = evaluate;
        LossName = lossName;
        ScoreName = scoreName;
        Description = description;
        this.dispose = dispose;
    }

    /// <summary>One dataset per client, in client order.</summary>
    public IReadOnlyList<IClientDataset> Shards { get; }

    /// <summary>All clients' data in one dataset (built on demand).</summary>
    public Func<IClientDataset> Pooled { get; }

    /// <summary>Scores the adapter loaded in the model on held-out data, or null without held-out data.</summary>
    public Func<EvaluationResult>? Evaluate { get; }

    /// <summary>"loss" or "DPO loss".</summary>
    public string LossName { get; }

    /// <summary>"exact match" or "reward accuracy".</summary>
    public string ScoreName { get; }

    /// <summary>A line describing the data (DPO), or null.</summary>
    public string? Description { get; }

    /// <summary>The score of a constant answer: the share of the most common answer in the held-out set (instruction
    /// tuning), or null (DPO, or no held-out data).</summary>
    public double? ScoreFloor { get; private init; }
    /// <summary>Each client's own held-out examples (<c>data.client_eval_fraction</c> of its shard, kept out of its
    /// training data), in client order; empty when the run holds none out.</summary>
    public IReadOnlyList<IReadOnlyList<InstructionExample>> ClientHeldOut { get; private init; } = [];

    /// <summary>Scores the adapter loaded in the model on the given examples (a client's own held-out split), or null
    /// when the run holds none out.</summary>
    public Func<IReadOnlyList<InstructionExample>, EvaluationResult>? EvaluateExamples { get; private init; }

    /// <summary>Reads, partitions and tokenises the training data of <paramref name="options"/>, and the held-out data.</summary>
    public static RunData Load(RunOptions options, EmbeddedDefaultFiles? defaults, LlamaForCausalLM model, ITextTokenizer tokenizer,
        ReferencePolicy? reference, CancellationToken cancellationToken = default) =>
        options.Objective.IsDpo
            ? Preferences(options, defaults, model, tokenizer, reference, cancellationToken, train: true)
            : Instructions(options, defaults, model, tokenizer, train: true);

    /// <summary>The held-out evaluation only (a federation server holds no training data).</summary>
    public static RunData LoadHeldOut(RunOptions options, EmbeddedDefaultFiles? defaults, LlamaForCausalLM model, ITextTokenizer tokenizer,
        ReferencePolicy? reference, CancellationToken cancellationToken = default) =>
        options.Objective.IsDpo
            ? Preferences(options, defaults, model, tokenizer, reference, cancellationToken, train: false)
            : Instructions(options, defaults, model, tokenizer, train: false);

    /// <summary>One client's whole data file as its dataset (a network client's own data).</summary>
    /// <exception cref="InvalidDataException">The file holds no usable example (names the file).</exception>
    public static IClientDataset LoadClient(LocalObjective objective, string path, string? dataset, string template, bool skipBad,
        ITextTokenizer tokenizer, int maxSequenceLength, CancellationToken cancellationToken = default)
    {
        int padId = tokenizer.PadTokenId ?? 0;
        if (objective.IsDpo)
        {
            var kind = PreferenceKind(dataset);
            var builder = PairBuilder(tokenizer, maxSequenceLength);
            var pairs = DatasetLoader.ReadPreferences(kind, path, new DatasetLoadOptions { SkipBad = skipBad }, new DataReadReport(), cancellationToken)
                .Select(r => builder.Build(r.Example)).ToList();
            if (pairs.Count == 0) throw new InvalidDataException($"{path}: no preference pairs");
            return new DpoClientDataset(pairs, objective.Dpo, padId);
        }
        CheckInstructionKind(dataset);
        var sft = new SftExampleBuilder(tokenizer, PromptTemplate.FromName(template), maxSequenceLength);
        var examples = AlpacaReader.ReadAll(path, new AlpacaReadOptions { SkipBad = skipBad }).Examples.Select(sft.Build).ToList();
        if (examples.Count == 0) throw new InvalidDataException($"{path}: no training examples");
        return new SftClientDataset(examples, padId);
    }

    /// <summary>Clients that each hold their own file (as network clients do), with their held-out splits, for the
    /// simulation's per-client evaluation (<see cref="PersonalEvaluation"/>) of a network run's configuration.</summary>
    internal static RunData OfClients(IReadOnlyList<IClientDataset> shards, IReadOnlyList<IReadOnlyList<InstructionExample>> heldOut,
        Func<IReadOnlyList<InstructionExample>, EvaluationResult> evaluateExamples) =>
        new(shards, () => throw new InvalidOperationException("clients with their own files have no pooled dataset here"), null, "loss", "exact match", null, null)
        {
            ClientHeldOut = heldOut, EvaluateExamples = evaluateExamples,
        };

    /// <summary>A network client's instruction data with its own held-out split: the same seeded rule as simulate's
    /// <c>data.client_eval_fraction</c> (<see cref="ClientHeldOutSplit"/>), so client <paramref name="client"/> of a run
    /// seeded <paramref name="runSeed"/> trains on and scores the same examples in both.</summary>
    /// <returns>The shard of the training part and the held-out examples (never trained on).</returns>
    public static (IClientDataset Shard, IReadOnlyList<InstructionExample> HeldOut) LoadClientWithHeldOut(string path, string? dataset, string template,
        bool skipBad, ITextTokenizer tokenizer, int maxSequenceLength, double fraction, long runSeed, int client)
    {
        CheckInstructionKind(dataset);
        var sft = new SftExampleBuilder(tokenizer, PromptTemplate.FromName(template), maxSequenceLength);
        var read = AlpacaReader.ReadAll(path, new AlpacaReadOptions { SkipBad = skipBad }).Examples;
        if (read.Count == 0) throw new InvalidDataException($"{path}: no training examples");
        var (train, heldOut) = ClientHeldOutSplit.Split(read, fraction, ClientHeldOutSplit.SeedOf(runSeed, client));
        return (new SftClientDataset(train.Select(sft.Build).ToList(), tokenizer.PadTokenId ?? 0), heldOut);
    }

    static RunData Instructions(RunOptions options, EmbeddedDefaultFiles? defaults, LlamaForCausalLM model, ITextTokenizer tokenizer, bool train)
    {
        var data = options.Data;
        CheckInstructionKind(data.Dataset);
        int padId = tokenizer.PadTokenId ?? 0;
        var template = PromptTemplate.FromName(data.Template);
        string? evalPath = data.EvalPath ?? defaults?.EvalPath;
        var heldOut = evalPath is null ? null : AlpacaReader.ReadAll(evalPath).Examples.Take(data.EvalLimit ?? int.MaxValue).ToList();
        var evaluate = SimulationRunner.InstructionEvaluator(model, tokenizer, template, options.Federation, heldOut);
        double? floor = heldOut is { Count: > 0 }
            ? Evaluation.Metrics.ClassificationMetrics.MajorityShare(heldOut.Select(e => Evaluation.HeldOutEvaluation.NormalizeAnswer(e.Response)).ToList())
            : null;
        if (evaluate is not null && options.Attack is { Kind: AttackKind.Backdoor } backdoor)
            evaluate = WithAttackSuccessRate(evaluate, new HeldOutEvaluation(model, tokenizer, template, options.Federation.MaxSequenceLength), heldOut!, backdoor);
        if (!train)
            return new RunData([], () => throw new InvalidOperationException("a server holds no training data"), evaluate, "loss", "exact match", null, null)
                { ScoreFloor = floor };

        string trainPath = data.TrainPath ?? defaults?.TrainPath ?? throw new ArgumentException("no training data: set data.path (--data)");
        var read = AlpacaReader.ReadAll(trainPath, new AlpacaReadOptions { SkipBad = data.SkipBad });
        var builder = new SftExampleBuilder(tokenizer, template, options.Federation.MaxSequenceLength);
        // The label of an instruction example is its response (the sentiment of the embedded default); Dirichlet
        // skews each client's label mix, as the non-IID experiments of the FL literature do.
        var partition = Partition(options, read.Examples.Select(e => (string?)e.Response.Trim()).ToList());
        var attackers = AttackersOf(options);
        var labels = read.Examples.Select(e => e.Response).ToHashSet(StringComparer.Ordinal);
        // With data.client_eval_fraction, each client's own held-out split is taken before any poisoning and never trained on.
        var split = Enumerable.Range(0, options.Federation.TotalClients)
            .Select(c => ClientHeldOutSplit.Split(partition.Select(read.Examples, c), data.ClientEvalFraction, ClientHeldOutSplit.SeedOf(options.Federation.Seed, c)))
            .ToList();
        var shards = Enumerable.Range(0, options.Federation.TotalClients)
            .Select(c =>
            {
                var examples = split[c].Train;
                if (attackers.Contains(c)) examples = Poison(examples, options.Attack!, labels, options.Federation.Seed + c);
                return new SftClientDataset(examples.Select(builder.Build).ToList(), padId);
            }).ToList();
        Func<IReadOnlyList<InstructionExample>, EvaluationResult>? evaluateExamples = null;
        if (data.ClientEvalFraction > 0)
        {
            var clientEvaluation = new HeldOutEvaluation(model, tokenizer, template, options.Federation.MaxSequenceLength);
            evaluateExamples = examples =>
            {
                var scores = clientEvaluation.Evaluate(examples);
                return new EvaluationResult(scores.Loss, scores.ExactMatch);
            };
        }
        return new RunData(shards, () => SftClientDataset.Pool(shards, padId), evaluate, "loss", "exact match", null, null)
        {
            ClientHeldOut = data.ClientEvalFraction > 0 ? split.Select(s => s.HeldOut).ToList() : [],
            EvaluateExamples = evaluateExamples,
            ScoreFloor = floor,
        };
    }

    /// <summary>The clients that attack (none without an attack).</summary>
    public static IReadOnlySet<int> AttackersOf(RunOptions options) =>
        options.Attack is { } attack ? Attackers.Choose(options.Federation.TotalClients, attack.Fraction, options.Federation.Seed) : new HashSet<int>();

    /// <summary>An attacker's examples after its data-poisoning attack (unchanged for the model-poisoning kinds).</summary>
    static IReadOnlyList<InstructionExample> Poison(IReadOnlyList<InstructionExample> examples, AttackOptions attack, IReadOnlyCollection<string> labels, long seed) =>
        attack.Kind switch
        {
            AttackKind.LabelFlip => DataPoisoning.FlipLabels(examples, labels),
            AttackKind.Backdoor => DataPoisoning.Backdoor(examples, attack.Trigger, attack.TargetAnswer, attack.PoisonFraction, seed),
            _ => examples,
        };

    /// <summary>The held-out scores plus "attack_success_rate": the backdoor's success on a triggered copy of the held-out set.</summary>
    static Func<EvaluationResult> WithAttackSuccessRate(Func<EvaluationResult> evaluate, HeldOutEvaluation evaluation, IReadOnlyList<InstructionExample> heldOut,
        AttackOptions backdoor)
    {
        var triggered = heldOut.Select(e => e with { Instruction = DataPoisoning.Triggered(e.Instruction, backdoor.Trigger) }).ToList();
        var truth = heldOut.Select(e => e.Response).ToList();
        return () =>
        {
            var scores = evaluate();
            double rate = BackdoorSuccess.Rate(evaluation.Answers(triggered), truth, backdoor.TargetAnswer, HeldOutEvaluation.NormalizeAnswer);
            var metrics = new Dictionary<string, double>(scores.Metrics ?? new Dictionary<string, double>()) { [AttackSuccessRateMetric] = rate };
            return scores with { Metrics = metrics };
        };
    }

    /// <summary>The held-out metric of a backdoor's attack success rate.</summary>
    public const string AttackSuccessRateMetric = "attack_success_rate";

    static RunData Preferences(RunOptions options, EmbeddedDefaultFiles? defaults, LlamaForCausalLM model, ITextTokenizer tokenizer,
        ReferencePolicy? reference, CancellationToken cancellationToken, bool train)
    {
        var data = options.Data;
        var dpo = options.Objective.Dpo;
        int padId = tokenizer.PadTokenId ?? 0;
        var kind = PreferenceKind(data.Dataset);
        var builder = PairBuilder(tokenizer, options.Federation.MaxSequenceLength);
        var loadOptions = new DatasetLoadOptions { SkipBad = data.SkipBad };
        string? evalPath = data.EvalPath ?? defaults?.PreferenceEvalPath;
        var heldOut = evalPath is null ? null : DatasetLoader.ReadPreferences(kind, evalPath, loadOptions, new DataReadReport(), cancellationToken)
            .Take(data.EvalLimit ?? int.MaxValue).Select(r => builder.Build(r.Example)).ToList();
        var heldOutScores = heldOut is { Count: > 0 } ? new PreferenceHeldOut(model, heldOut, dpo, padId, reference, options.Federation.BatchSize) : null;
        string referenceText = options.ReferenceAdapter is { } dir ? $"adapter {dir} (also the starting point)" : "base model (adapters off)";
        if (!train)
            return new RunData([], () => throw new InvalidOperationException("a server holds no training data"), heldOutScores is null ? null : heldOutScores.Evaluate,
                "DPO loss", "reward accuracy", $"DPO β={dpo.Beta}, reference = {referenceText}; held-out {heldOut?.Count.ToString() ?? "none"}", () => heldOutScores?.Dispose());

        string trainPath = data.TrainPath ?? defaults?.PreferenceTrainPath ?? throw new ArgumentException("no training data: set data.path (--data)");
        var report = new DataReadReport();
        var examples = DatasetLoader.ReadPreferences(kind, trainPath, loadOptions, report, cancellationToken).Select(r => r.Example).ToList();
        // A preference pair's label is its chosen response (the correct sentiment of the embedded set), so Dirichlet
        // skews which answers each client prefers.
        var partition = Partition(options, examples.Select(e => (string?)e.Chosen.Trim()).ToList());
        var shards = Enumerable.Range(0, options.Federation.TotalClients)
            .Select(c => new DpoClientDataset(partition.Select(examples, c).Select(builder.Build).ToList(), dpo, padId, reference)).ToList();
        DpoClientDataset? pooled = null;
        string description = $"DPO β={dpo.Beta}, reference = {referenceText}; data {(data.TrainPath is null ? "embedded preference pairs" : trainPath)} " +
            $"({kind.Info().Name}, {examples.Count} pairs, {report}); held-out {heldOut?.Count.ToString() ?? "none"}";
        return new RunData(shards, () => pooled = DpoClientDataset.Pool(shards, dpo, padId, reference), heldOutScores is null ? null : heldOutScores.Evaluate,
            "DPO loss", "reward accuracy", description, () =>
            {
                foreach (var shard in shards) shard.Dispose();
                pooled?.Dispose();
                heldOutScores?.Dispose();
            });
    }

    static void CheckInstructionKind(string? dataset)
    {
        if (dataset is { } kind && kind != "alpaca")
            throw new ArgumentException($"data.dataset '{kind}': instruction tuning reads the Alpaca schema (convert with the data loaders, or use the dpo task for preference data)");
    }

    static DatasetKind PreferenceKind(string? dataset)
    {
        var kind = DatasetKinds.Parse(dataset ?? "generic-preference");
        if (!kind.Info().IsPreference)
            throw new ArgumentException($"data.dataset '{dataset}' holds instruction examples; the dpo task needs ultrafeedback, hh-rlhf or generic-preference");
        return kind;
    }

    static PreferencePairBuilder PairBuilder(ITextTokenizer tokenizer, int maxSequenceLength) =>
        new(tokenizer, maxSequenceLength, Math.Min(PreferencePairBuilder.DefaultMaxPromptLength, maxSequenceLength / 2));

    static ClientPartition Partition(RunOptions options, IReadOnlyList<string?> labels) =>
        options.Data.Partition.Create().Partition(labels, options.Federation.TotalClients, (ulong)options.Federation.Seed);

    /// <summary>Frees the clients' reference caches and the held-out scorer.</summary>
    public void Dispose() => dispose?.Invoke();
}
