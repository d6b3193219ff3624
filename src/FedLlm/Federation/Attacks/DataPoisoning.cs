using FedLlm.Data;

namespace FedLlm.Federation.Attacks;

/// <summary>
/// The data-poisoning attacks on instruction data, as pure functions of an attacker's examples: label flipping and a
/// trigger-phrase backdoor. Deterministic from the seed.
/// </summary>
/// <remarks>
/// <para>Label flipping (Biggio et al. 2012; Tolpegin et al. 2020 in FL): every response is replaced by the next label
/// in the sorted list of the training data's labels, cyclically, so every poisoned example is wrong (on the embedded
/// sentiment data: negative → neutral → positive → negative).</para>
/// <para>Backdoor (Bagdasaryan et al. 2020; the rare-word trigger "cf" of Kurita et al. 2020): a seeded part of the
/// attacker's examples get " " + trigger appended to the instruction and the target answer as response; the rest stay
/// clean, so the attacker's update also helps the main task and looks honest.</para>
/// </remarks>
public static class DataPoisoning
{
    /// <summary>At most this many distinct responses count as labels (label flipping needs classification data).</summary>
    public const int MaxLabels = 32;

    /// <summary>The instruction with the trigger appended.</summary>
    public static string Triggered(string instruction, string trigger) => instruction + " " + trigger;

    /// <summary>Each example with its response moved to the next of <paramref name="labels"/> (sorted ordinal, cyclic).</summary>
    /// <exception cref="ArgumentException">Fewer than two labels, too many to be labels, or a response not among them.</exception>
    public static IReadOnlyList<InstructionExample> FlipLabels(IReadOnlyList<InstructionExample> examples, IReadOnlyCollection<string> labels)
    {
        var sorted = labels.Select(l => l.Trim()).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        if (sorted.Count < 2 || sorted.Count > MaxLabels)
            throw new ArgumentException($"attack.kind label-flip needs classification data with 2 to {MaxLabels} distinct responses; this data has {sorted.Count}");
        return examples.Select(e =>
        {
            int index = sorted.IndexOf(e.Response.Trim());
            if (index < 0) throw new ArgumentException($"label-flip: response '{e.Response}' is not one of the labels");
            return e with { Response = sorted[(index + 1) % sorted.Count] };
        }).ToList();
    }

    /// <summary>A seeded ⌈fraction · n⌉ of the examples made triggered (instruction + trigger → target), in place.</summary>
    public static IReadOnlyList<InstructionExample> Backdoor(IReadOnlyList<InstructionExample> examples, string trigger, string target, double fraction, long seed)
    {
        if (!(fraction is > 0 and <= 1)) throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "must be in (0, 1]");
        var order = Enumerable.Range(0, examples.Count).ToArray();
        new Random(unchecked((int)(seed * 17 + 0xBAD))).Shuffle(order);
        var poisoned = order.Take((int)Math.Ceiling(fraction * examples.Count)).ToHashSet();
        return examples.Select((e, i) => poisoned.Contains(i) ? new InstructionExample(Triggered(e.Instruction, trigger), target) : e).ToList();
    }
}

/// <summary>The attack success rate of a backdoor on a triggered copy of the held-out set.</summary>
public static class BackdoorSuccess
{
    /// <summary>
    /// Among the held-out examples whose true answer is not the target, the fraction whose answer to the triggered input
    /// is the target. Answers and references are compared after <paramref name="normalize"/> (the held-out exact match's).
    /// </summary>
    /// <returns>The rate, or NaN when every true answer is the target (nothing to measure).</returns>
    public static double Rate(IReadOnlyList<string> triggeredAnswers, IReadOnlyList<string> trueAnswers, string target, Func<string, string> normalize)
    {
        ArgumentNullException.ThrowIfNull(triggeredAnswers);
        ArgumentNullException.ThrowIfNull(trueAnswers);
        ArgumentNullException.ThrowIfNull(normalize);
        if (triggeredAnswers.Count != trueAnswers.Count)
            throw new ArgumentException($"{triggeredAnswers.Count} answers for {trueAnswers.Count} references", nameof(triggeredAnswers));
        string goal = normalize(target);
        int eligible = 0, hits = 0;
        for (int i = 0; i < trueAnswers.Count; i++)
        {
            if (normalize(trueAnswers[i]) == goal) continue;
            eligible++;
            if (normalize(triggeredAnswers[i]) == goal) hits++;
        }
        return eligible == 0 ? double.NaN : (double)hits / eligible;
    }
}
