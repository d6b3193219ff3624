namespace FedLlm.Data.Partitioning;

/// <summary>
/// Holds out a fraction of each client's own shard for evaluating that client's models (personalisation is judged on the
/// client's own distribution, not on a shared held-out set). A seeded shuffle per client, so the split is reproducible
/// and independent of the other clients.
/// </summary>
public static class ClientHeldOutSplit
{
    /// <summary>How many of <paramref name="count"/> examples are held out: ⌈fraction·count⌉, but never the last training
    /// example (a client with one example keeps it for training) and none for fraction 0.</summary>
    public static int HeldOutCount(int count, double fraction)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (!(fraction >= 0 && fraction < 1)) throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "must be in [0, 1)");
        if (fraction == 0 || count < 2) return 0;
        return Math.Min(count - 1, (int)Math.Ceiling(fraction * count));
    }

    /// <summary>The seed of client <paramref name="client"/>'s split in a run seeded <paramref name="runSeed"/>: the same in
    /// simulate (one file partitioned) and on a network client (its own file), so both hold out the same examples.</summary>
    public static long SeedOf(long runSeed, int client) => runSeed * 31 + client;

    /// <summary>Splits <paramref name="examples"/> into (train, held out), both in their original order.</summary>
    public static (IReadOnlyList<T> Train, IReadOnlyList<T> HeldOut) Split<T>(IReadOnlyList<T> examples, double fraction, long seed)
    {
        ArgumentNullException.ThrowIfNull(examples);
        int heldOut = HeldOutCount(examples.Count, fraction);
        if (heldOut == 0) return (examples, []);
        var order = Enumerable.Range(0, examples.Count).ToArray();
        new Random(unchecked((int)(seed ^ (seed >> 32)))).Shuffle(order);
        var held = order.Take(heldOut).ToHashSet();
        return (examples.Where((_, i) => !held.Contains(i)).ToList(), examples.Where((_, i) => held.Contains(i)).ToList());
    }
}
