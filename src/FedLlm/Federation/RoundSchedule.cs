namespace FedLlm.Federation;

/// <summary>Per-round decisions that depend only on (seed, round), so a resumed run makes the same ones.</summary>
public static class RoundSchedule
{
    /// <summary>
    /// OpenFedLLM's learning rate of round r (0-based) of R: lr_min + ½(lr₀ − lr_min)(1 + cos(π r / R)),
    /// constant within the round.
    /// </summary>
    public static double LearningRate(int round, FederationOptions o) =>
        o.MinLearningRate + 0.5 * (o.LearningRate - o.MinLearningRate) * (1 + Math.Cos(Math.PI * round / o.Rounds));

    /// <summary>
    /// The clients of a round: all of them when fewer than the sample size exist, else a seeded sample without
    /// replacement, sorted (as OpenFedLLM sorts its sample).
    /// </summary>
    public static IReadOnlyList<int> SampleClients(int round, FederationOptions o)
    {
        if (o.TotalClients <= o.ClientsPerRound) return Enumerable.Range(0, o.TotalClients).ToList();
        var rng = new Random(unchecked((int)(o.Seed * 7919 + round)));
        var all = Enumerable.Range(0, o.TotalClients).ToArray();
        rng.Shuffle(all);
        return all.Take(o.ClientsPerRound).Order().ToList();
    }

    /// <summary>The seed of a client's local training in a round: its data sample and dropout follow from it.</summary>
    public static long LocalSeed(int round, int client, FederationOptions o) => LocalSeed(round, client, o.Seed);

    /// <summary>The seed of a client's local training in a round, from the run's seed.</summary>
    public static long LocalSeed(int round, int client, long seed) => unchecked(seed * 1_000_003 + round * 10_007L + client);
}
