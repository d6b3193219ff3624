namespace FedLlm.Training;

/// <summary>
/// The order in which a trainer visits its examples: an endless stream of epochs, each a permutation seeded by
/// (seed, epoch). Position p of the stream is a pure function of the seed, so a resumed run visits exactly what the
/// uninterrupted run would have, and the first epoch's prefix is a fresh sample without replacement.
/// </summary>
public sealed class ExampleOrder(long seed)
{
    private readonly Dictionary<int, int[]> epochs = new();

    /// <summary>Indices into a set of <paramref name="n"/> examples for stream positions [start, start + count).</summary>
    public int[] Indices(long start, int count, int n)
    {
        if (n <= 0) throw new ArgumentException("no examples to order", nameof(n));
        var result = new int[count];
        for (int k = 0; k < count; k++)
        {
            long p = start + k;
            result[k] = Epoch((int)(p / n), n)[(int)(p % n)];
        }
        return result;
    }

    int[] Epoch(int epoch, int n)
    {
        if (epochs.TryGetValue(epoch, out var order) && order.Length == n) return order;
        // System.Random with a seed uses a fixed legacy algorithm, stable across .NET versions.
        var rng = new Random(unchecked((int)(seed * 31 + epoch)));
        order = Enumerable.Range(0, n).ToArray();
        rng.Shuffle(order);
        epochs[epoch] = order;
        return order;
    }
}
