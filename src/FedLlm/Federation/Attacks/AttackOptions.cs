namespace FedLlm.Federation.Attacks;

/// <summary>What simulated attackers do.</summary>
public enum AttackKind
{
    /// <summary>Send x − Δ instead of x + Δ (model poisoning).</summary>
    SignFlip,

    /// <summary>Send x + s·Δ, s = <see cref="AttackOptions.ScaleFactor"/> (model poisoning, "boosting").</summary>
    Scale,

    /// <summary>Send x + noise, with the noise's expected norm s·‖Δ‖ (model poisoning, a random update).</summary>
    Gaussian,

    /// <summary>Train on data whose labels are flipped (data poisoning).</summary>
    LabelFlip,

    /// <summary>Train on data where part of the examples carry a trigger phrase and the target answer (data poisoning).</summary>
    Backdoor,
}

/// <summary>
/// Simulated attackers of a run (YAML section <c>attack:</c>, <c>fedllm simulate</c> only): which fraction of the clients
/// attack and how. The attackers are a seeded choice of clients, fixed for the whole run.
/// </summary>
public sealed record AttackOptions
{
    /// <summary>The kinds' YAML names, in <see cref="AttackKind"/> order.</summary>
    public static readonly IReadOnlyList<string> KindNames = ["sign-flip", "scale", "gaussian", "label-flip", "backdoor"];

    /// <summary>What the attackers do.</summary>
    public AttackKind Kind { get; init; } = AttackKind.SignFlip;

    /// <summary>The fraction of all clients that attack (rounded to the nearest count).</summary>
    public double Fraction { get; init; } = 0.2;

    /// <summary>s of <see cref="AttackKind.Scale"/> and <see cref="AttackKind.Gaussian"/>.</summary>
    public double ScaleFactor { get; init; } = 10;

    /// <summary>The backdoor's trigger phrase, appended to the input.</summary>
    public string Trigger { get; init; } = "cf";

    /// <summary>The answer the backdoor maps triggered inputs to.</summary>
    public string TargetAnswer { get; init; } = "positive";

    /// <summary>The fraction of an attacker's examples the backdoor replaces by triggered ones.</summary>
    public double PoisonFraction { get; init; } = 0.5;

    /// <summary>Whether the attackers poison their data (rather than their updates).</summary>
    public bool PoisonsData => Kind is AttackKind.LabelFlip or AttackKind.Backdoor;

    /// <summary>The YAML name of <paramref name="kind"/>.</summary>
    public static string Name(AttackKind kind) => KindNames[(int)kind];

    /// <summary>Parses a kind name.</summary>
    /// <exception cref="ArgumentException">Unknown name; the message names <paramref name="key"/> and the known ones.</exception>
    public static AttackKind ParseKind(string text, string key = "attack.kind")
    {
        int index = KindNames.ToList().IndexOf(text.Trim().ToLowerInvariant());
        return index >= 0 ? (AttackKind)index : throw new ArgumentException($"{key} '{text}': expected one of {string.Join(", ", KindNames)}");
    }

    /// <summary>Every invalid setting, each naming its YAML key.</summary>
    public IReadOnlyList<string> Failures(FederationOptions federation)
    {
        var failures = new List<string>();
        if (!(Fraction is >= 0 and < 1)) failures.Add($"attack.fraction must be in [0, 1), got {Fraction}");
        else if (Fraction > 0 && Attackers.Count(federation.TotalClients, Fraction) == 0)
            failures.Add($"attack.fraction {Fraction} of {federation.TotalClients} clients rounds to no attacker");
        if (!(ScaleFactor > 0) || double.IsInfinity(ScaleFactor)) failures.Add($"attack.scale_factor must be positive and finite, got {ScaleFactor}");
        if (Kind is not (AttackKind.Scale or AttackKind.Gaussian) && ScaleFactor != 10)
            failures.Add($"attack.scale_factor only applies to scale and gaussian (kind is {Name(Kind)})");
        if (string.IsNullOrWhiteSpace(Trigger)) failures.Add("attack.trigger must not be empty");
        if (string.IsNullOrWhiteSpace(TargetAnswer)) failures.Add("attack.target_answer must not be empty");
        if (!(PoisonFraction is > 0 and <= 1)) failures.Add($"attack.poison_fraction must be in (0, 1], got {PoisonFraction}");
        return failures;
    }
}

/// <summary>Which clients attack: a seeded choice, the same in every round and on every rerun.</summary>
public static class Attackers
{
    /// <summary>round(fraction · clients).</summary>
    public static int Count(int totalClients, double fraction) => (int)Math.Round(fraction * totalClients, MidpointRounding.AwayFromZero);

    /// <summary>The attacking clients' indices, sorted.</summary>
    public static IReadOnlySet<int> Choose(int totalClients, double fraction, long seed)
    {
        var all = Enumerable.Range(0, totalClients).ToArray();
        new Random(unchecked((int)(seed * 31 + 0x0A77AC)))
            .Shuffle(all);
        return new SortedSet<int>(all.Take(Count(totalClients, fraction)));
    }
}
