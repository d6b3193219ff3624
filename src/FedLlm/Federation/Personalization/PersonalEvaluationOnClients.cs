using System.Globalization;

namespace FedLlm.Federation.Personalization;

/// <summary>
/// Per-client evaluation of personalisation over a federation whose clients hold their own data (the network): every
/// <see cref="Every"/> rounds (0 = never) and after the last, the round's clients score the new global adapter and their
/// personal adapter (<see cref="IPersonalizedClientHooks.PersonalAdapter"/>, named by <see cref="PersonalHookKey"/>) on
/// their own held-out split and report both. The combined metrics are the held-out-size-weighted means
/// (<c>global_loss</c>, <c>global_exact_match</c>, <c>personal_loss</c>, <c>personal_exact_match</c>) and one row per
/// client (<c>client-0/global_exact_match</c> …), so metrics.jsonl carries what simulate's results.json does.
/// </summary>
public sealed class PersonalEvaluationOnClients : DelegatingStrategy
{
    /// <summary>Instruction config key that turns a task into a per-client evaluation ("1"): score, do not train.</summary>
    public const string EvaluateKey = "personal_evaluation";

    /// <summary>Instruction config key naming the client hook that holds the personal adapter; absent = the algorithm
    /// keeps none (personal = global).</summary>
    public const string PersonalHookKey = "personal_hook";

    /// <summary>Client metric: the size of the client's held-out split (the weight of its scores).</summary>
    public const string HeldOutExamplesMetric = "held_out_examples";

    readonly int rounds;
    readonly string? personalHook;

    /// <summary>Wraps <paramref name="innerStrategy"/>; <paramref name="rounds"/> is the run's number of rounds and
    /// <paramref name="personalHook"/> the algorithm's <see cref="IPersonalizedClientHooks"/> name, or null.</summary>
    public PersonalEvaluationOnClients(IFederatedStrategy innerStrategy, int every, int rounds, string? personalHook) : base(innerStrategy)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(every);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rounds);
        Every = every;
        this.rounds = rounds;
        this.personalHook = personalHook;
    }

    /// <summary>Evaluate every this many rounds besides the last (0 = only after the last).</summary>
    public int Every { get; }

    /// <summary>True for instructions that ask a client for its per-client evaluation instead of training.</summary>
    public static bool Asks(ClientInstructions instructions) =>
        instructions.Config.TryGetValue(EvaluateKey, out var value) && value == "1";

    /// <inheritdoc/>
    public override ClientInstructions? ConfigureEvaluate(int round)
    {
        if (!(round + 1 == rounds || (Every > 0 && (round + 1) % Every == 0))) return InnerStrategy.ConfigureEvaluate(round);
        var config = new Dictionary<string, string>(StringComparer.Ordinal) { [EvaluateKey] = "1" };
        if (personalHook is not null) config[PersonalHookKey] = personalHook;
        return new ClientInstructions(round, 0) { Config = config };
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, double> AggregateEvaluate(int round, IReadOnlyList<ClientEvaluation> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        var combined = new SortedDictionary<string, double>(StringComparer.Ordinal);
        foreach (var (key, value) in ClientEvaluation.WeightedMean(results))
            if (key != HeldOutExamplesMetric) combined[key] = value;
        foreach (var result in results)
        {
            combined[RowKey(result.ClientId, HeldOutExamplesMetric)] = result.ExampleCount;
            foreach (var (key, value) in result.Metrics)
                if (key != HeldOutExamplesMetric) combined[RowKey(result.ClientId, key)] = value;
        }
        return combined;
    }

    /// <summary>The metrics one client reports: its adapters' held-out loss and exact match.</summary>
    public static Dictionary<string, double> ClientMetrics(int heldOutExamples, EvaluationResult global, EvaluationResult personal) => new(StringComparer.Ordinal)
    {
        ["global_loss"] = global.Loss, ["global_exact_match"] = global.Score,
        ["personal_loss"] = personal.Loss, ["personal_exact_match"] = personal.Score,
        [HeldOutExamplesMetric] = heldOutExamples,
    };

    /// <summary>"client-0/personal_exact_match" style key of one client's metric.</summary>
    public static string RowKey(string clientId, string metric) => string.Create(CultureInfo.InvariantCulture, $"{clientId}/{metric}");
}
