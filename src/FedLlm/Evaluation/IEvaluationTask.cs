using FedLlm.Generation;

namespace FedLlm.Evaluation;

/// <summary>
/// One benchmark kind (MMLU, GSM8K, FPB, HumanEval, MT-Bench…) scored from local files. A task formats its prompts,
/// asks <see cref="IEvaluationModel"/> for log-likelihoods or generations, and scores them; it never touches tensors,
/// so a scripted model whose answers are known can test every scorer.
/// </summary>
public interface IEvaluationTask
{
    /// <summary>The name the CLI and the federation's per-round metrics use ("mmlu", "gsm8k", "fpb"…).</summary>
    string Name { get; }

    /// <summary>Scores <paramref name="model"/> on the task's items under <paramref name="options"/> (each task reads
    /// the options it documents).</summary>
    /// <param name="model">The model asked for log-likelihoods or generations.</param>
    /// <param name="options">Limit, batch size, shots, token budget and seed.</param>
    /// <param name="progress">Told as items are scored, or null.</param>
    /// <param name="cancellationToken">Stops between model calls.</param>
    EvaluationReport Evaluate(IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default);
}

/// <summary>
/// What an evaluation asks of a language model, in text: the shape of lm-evaluation-harness's requests. Backed by a
/// checkpoint (plus adapter) in CausalLmEvaluationModel, by a scripted fake in tests.
/// </summary>
public interface IEvaluationModel
{
    /// <summary>
    /// Σ log p(continuation | context) over the continuation's tokens, and whether greedy decoding would have produced
    /// exactly the continuation. Context and continuation are tokenized separately, as lm-evaluation-harness does, so a
    /// choice's score never depends on how its first token merges with the context.
    /// </summary>
    IReadOnlyList<LogLikelihood> LogLikelihoods(IReadOnlyList<LogLikelihoodRequest> requests, CancellationToken cancellationToken = default);

    /// <summary>Continuations of each prompt under <paramref name="options"/> (greedy unless it says otherwise), stop strings cut off.</summary>
    IReadOnlyList<string> Generate(IReadOnlyList<string> prompts, GenerationOptions options, CancellationToken cancellationToken = default);
}

/// <summary>One log-likelihood question: how likely is <paramref name="Continuation"/> after
/// <paramref name="Context"/>.</summary>
/// <param name="Context">The prompt, tokenized on its own.</param>
/// <param name="Continuation">The text scored (a choice, usually with its leading space).</param>
public sealed record LogLikelihoodRequest(string Context, string Continuation);

/// <summary>The answer to a <see cref="LogLikelihoodRequest"/>.</summary>
/// <param name="LogProbability">Σ log p over the continuation's tokens (natural log, ≤ 0).</param>
/// <param name="IsGreedy">Whether greedy decoding would produce exactly the continuation.</param>
/// <param name="ContinuationTokens">Tokens of the continuation.</param>
public sealed record LogLikelihood(double LogProbability, bool IsGreedy, int ContinuationTokens);

/// <summary>Settings common to every task; each task documents which it reads.</summary>
public sealed record EvaluationRunOptions
{
    /// <summary>Evaluate only the first N items (0 = all).</summary>
    public int Limit { get; init; }

    /// <summary>Requests per model call (generation batch, log-likelihood batch).</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>Few-shot examples prepended to each prompt (MMLU's published setting is 5, from the dev split).</summary>
    public int FewShot { get; init; }

    /// <summary>Generation budget for tasks that generate.</summary>
    public int MaxNewTokens { get; init; } = 256;

    /// <summary>Seed of any sampling (few-shot choice, pass@k samples).</summary>
    public long Seed { get; init; } = 1234;

    /// <summary>Code tasks run generated programs without the OS sandbox (<see cref="Code.SandboxOptions.UnsafeCodeExecution"/>).</summary>
    public bool UnsafeCodeExecution { get; init; }
}

/// <summary>Progress of a running evaluation (for a progress bar with items/s and ETA).</summary>
public sealed record EvaluationProgress(int Done, int Total);

/// <summary>The scores of one task: headline metrics, per-group metrics (per MMLU subject, per MT-Bench turn…) and the scored items.</summary>
/// <param name="Metrics">Name → value, e.g. "accuracy", "macro_f1", "pass@1", "mt_avg". Proportions in [0, 1].</param>
/// <param name="Groups">Group → metrics, e.g. "abstract_algebra" → {accuracy}; empty when the task has no groups.</param>
/// <param name="Samples">One row per scored item, for the JSON output and for inspecting failures.</param>
/// <param name="Task">The task's name.</param>
/// <param name="Items">Items scored.</param>
public sealed record EvaluationReport(
    string Task,
    int Items,
    IReadOnlyDictionary<string, double> Metrics,
    IReadOnlyDictionary<string, IReadOnlyDictionary<string, double>> Groups,
    IReadOnlyList<EvaluationSample> Samples);

/// <summary>One scored item: what was asked, what the model said, what was expected, and the item's score.</summary>
public sealed record EvaluationSample(string Id, string Prompt, string? Output, string? Reference, double Score, string? Group = null);
