using System.Security.Cryptography;

namespace FedLlm.Federation.SecureAggregation;

/// <summary>
/// Who shares keys and masks with whom in a round. The complete graph is Bonawitz et al. 2017; SecAgg+ (Bell et al.
/// 2020, §3) replaces it by a random k-regular graph, so each client's work and traffic grow with k ~ log n instead of n.
/// </summary>
/// <remarks>
/// The sparse graph is a Harary graph H_{k,n} (each client joined to the k/2 nearest on each side of a ring) over a
/// uniformly random ordering of the clients, the construction Bell et al. analyse. The server draws the ordering; in the
/// semi-honest model it does not choose it adversarially.
/// </remarks>
public static class NeighbourGraph
{
    /// <summary>The neighbours of each of <paramref name="clients"/>: everyone else when <paramref name="degree"/> is null
    /// or at least n − 1, else a random Harary graph of even degree k.</summary>
    /// <param name="shuffle">Orders the clients on the ring (null: the operating system's cryptographic generator).</param>
    /// <param name="clients">The participants' ids.</param>
    /// <param name="degree">k, even; null = the complete graph.</param>
    public static IReadOnlyDictionary<int, IReadOnlyList<int>> Create(IReadOnlyList<int> clients, int? degree, Func<int, int>? shuffle = null)
    {
        ArgumentNullException.ThrowIfNull(clients);
        int n = clients.Count;
        if (degree is null || degree >= n - 1)
            return clients.ToDictionary(u => u, u => (IReadOnlyList<int>)clients.Where(v => v != u).Order().ToList());
        int k = degree.Value;
        if (k < 2 || k % 2 != 0) throw new ArgumentOutOfRangeException(nameof(degree), k, "a sparse neighbour graph needs an even degree ≥ 2");
        var ring = clients.ToArray();
        shuffle ??= RandomNumberGenerator.GetInt32;
        for (int i = n - 1; i > 0; i--)
        {
            int j = shuffle(i + 1);
            (ring[i], ring[j]) = (ring[j], ring[i]);
        }
        var neighbours = new Dictionary<int, IReadOnlyList<int>>(n);
        for (int p = 0; p < n; p++)
        {
            var set = new SortedSet<int>();
            for (int d = 1; d <= k / 2; d++)
            {
                set.Add(ring[(p + d) % n]);
                set.Add(ring[(p - d + n) % n]);
            }
            neighbours[ring[p]] = set.ToList();
        }
        return neighbours;
    }
}
