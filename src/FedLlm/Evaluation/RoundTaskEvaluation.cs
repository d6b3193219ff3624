using FedLlm.Modeling;
using FedLlm.Tokenization;

namespace FedLlm.Evaluation;

/// <summary>
/// A benchmark task scored on the global model every <see cref="Every"/> rounds of a federated run (and after the last
/// round), its headline metrics written into that round's record as "{task}/{metric}".
/// </summary>
public sealed class RoundTaskEvaluation
{
    /// <summary>Scores <paramref name="task"/> with <paramref name="options"/> every <paramref name="every"/>
    /// rounds.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="every"/> is not positive.</exception>
    public RoundTaskEvaluation(IEvaluationTask task, EvaluationRunOptions options, int every)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(every);
        Task = task;
        Options = options;
        Every = every;
    }

    /// <summary>The benchmark task.</summary>
    public IEvaluationTask Task { get; }

    /// <summary>Limit, shots, batch size and token budget of each scoring.</summary>
    public EvaluationRunOptions Options { get; }

    /// <summary>Score every this many rounds (and after the last).</summary>
    public int Every { get; }

    /// <summary>Whether 0-based <paramref name="round"/> of <paramref name="rounds"/> is scored.</summary>
    public bool IsDue(int round, int rounds) => (round + 1) % Every == 0 || round + 1 == rounds;

    /// <summary>Scores <paramref name="model"/> as it stands (the caller has loaded the global adapter into it).</summary>
    public IReadOnlyDictionary<string, double> Evaluate(LlamaForCausalLM model, ITextTokenizer tokenizer, CancellationToken cancellationToken = default)
    {
        var report = Task.Evaluate(new CausalLmEvaluationModel(model, tokenizer, Options.BatchSize), Options, null, cancellationToken);
        return Prefixed(report);
    }

    /// <summary>"{task}/{metric}" for each headline metric.</summary>
    public static IReadOnlyDictionary<string, double> Prefixed(EvaluationReport report) =>
        report.Metrics.ToDictionary(m => $"{report.Task}/{m.Key}", m => m.Value);
}
