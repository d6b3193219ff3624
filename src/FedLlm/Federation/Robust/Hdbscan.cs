namespace FedLlm.Federation.Robust;

/// <summary>
/// HDBSCAN over a precomputed distance matrix with min_samples = 1, for the few hundred points of a federated round:
/// minimum spanning tree, single-linkage hierarchy, condensed tree, excess-of-mass selection and labelling, step for step
/// as the reference implementation (McInnes, Healy, Astels, "hdbscan: Hierarchical density based clustering", JOSS
/// 2017; Campello, Moulavi, Sander, PAKDD 2013) with its generic (O(n²)) algorithm.
/// </summary>
/// <remarks>
/// <para>With min_samples = 1 the core distance of a point is the distance to its nearest other point, which is at most
/// its distance to any point, so the mutual reachability max(core_a, core_b, d_ab) is d_ab itself and the hierarchy is
/// plain single linkage over the distances.</para>
/// <para>λ = 1/d; a merge at distance 0 has λ = ∞. Ties between equal distances are broken by point index; the labels
/// do not depend on that order for the parameters FLAME uses (min_cluster_size &gt; n/2, see
/// <see cref="Flame"/>), where the one cluster is the first single-linkage component that holds min_cluster_size points.</para>
/// </remarks>
public static class Hdbscan
{
    /// <summary>The label that marks a point as noise.</summary>
    public const int Noise = -1;

    /// <summary>Cluster labels (0, 1, ... in order of the clusters' birth) or <see cref="Noise"/>, one per point.</summary>
    /// <param name="distances">Symmetric n × n distances, zero diagonal, finite and ≥ 0.</param>
    /// <param name="minClusterSize">The fewest points a cluster may hold (≥ 1).</param>
    /// <param name="allowSingleCluster">Whether the root (all points) may be selected as the one cluster.</param>
    /// <exception cref="ArgumentException">The matrix is not square, not symmetric, or holds a negative or non-finite
    /// distance; or <paramref name="minClusterSize"/> &lt; 1.</exception>
    public static int[] Cluster(double[,] distances, int minClusterSize, bool allowSingleCluster)
    {
        ArgumentNullException.ThrowIfNull(distances);
        int n = distances.GetLength(0);
        if (distances.GetLength(1) != n) throw new ArgumentException($"distances are {n} × {distances.GetLength(1)}, not square", nameof(distances));
        if (minClusterSize < 1) throw new ArgumentOutOfRangeException(nameof(minClusterSize), minClusterSize, "min_cluster_size must be ≥ 1");
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++)
                if (!double.IsFinite(distances[a, b]) || distances[a, b] < 0 || distances[a, b] != distances[b, a])
                    throw new ArgumentException($"distance [{a}, {b}] = {distances[a, b]}: distances must be finite, ≥ 0 and symmetric", nameof(distances));
        if (n == 0) return [];
        if (n == 1) return [allowSingleCluster && minClusterSize <= 1 ? 0 : Noise];

        var hierarchy = SingleLinkage(MinimumSpanningTree(distances));
        var condensed = Condense(hierarchy, n, minClusterSize);
        var selected = SelectExcessOfMass(condensed, n, allowSingleCluster);
        return Label(condensed, n, selected, allowSingleCluster);
    }

    /// <summary>One edge (a, b, d) of the minimum spanning tree.</summary>
    readonly record struct Edge(int A, int B, double Distance);

    /// <summary>One merge of the single-linkage hierarchy: node n + k joins <see cref="Left"/> and <see cref="Right"/>
    /// (points are nodes 0..n−1) at <see cref="Distance"/>, holding <see cref="Size"/> points.</summary>
    readonly record struct Merge(int Left, int Right, double Distance, int Size);

    /// <summary>One row of the condensed tree: <see cref="Child"/> (a point &lt; n or a cluster ≥ n) leaves
    /// <see cref="Parent"/> (a cluster, the root is n) at λ = <see cref="Lambda"/>.</summary>
    readonly record struct CondensedEdge(int Parent, int Child, double Lambda, int ChildSize);

    /// <summary>Prim's algorithm on the complete graph: n − 1 edges, sorted by distance, ties by the order found.</summary>
    static Edge[] MinimumSpanningTree(double[,] d)
    {
        int n = d.GetLength(0);
        var inTree = new bool[n];
        var best = new double[n];
        var from = new int[n];
        Array.Fill(best, double.PositiveInfinity);
        var edges = new List<Edge>(n - 1);
        int current = 0;
        inTree[0] = true;
        for (int step = 1; step < n; step++)
        {
            int next = -1;
            for (int v = 0; v < n; v++)
            {
                if (inTree[v]) continue;
                if (d[current, v] < best[v]) { best[v] = d[current, v]; from[v] = current; }
                if (next < 0 || best[v] < best[next]) next = v;
            }
            edges.Add(new Edge(from[next], next, best[next]));
            inTree[next] = true;
            current = next;
        }
        return edges.OrderBy(e => e.Distance).ToArray(); // stable: ties keep Prim's order
    }

    /// <summary>The single-linkage dendrogram from sorted MST edges (scipy's linkage layout: merge k is node n + k).</summary>
    static Merge[] SingleLinkage(Edge[] sortedEdges)
    {
        int n = sortedEdges.Length + 1;
        var parent = Enumerable.Range(0, 2 * n - 1).ToArray();
        var size = new int[2 * n - 1];
        for (int i = 0; i < n; i++) size[i] = 1;
        int Find(int x)
        {
            while (parent[x] != x) x = parent[x] = parent[parent[x]];
            return x;
        }
        var merges = new Merge[n - 1];
        for (int k = 0; k < sortedEdges.Length; k++)
        {
            int a = Find(sortedEdges[k].A), b = Find(sortedEdges[k].B), node = n + k;
            parent[a] = parent[b] = node;
            size[node] = size[a] + size[b];
            merges[k] = new Merge(a, b, sortedEdges[k].Distance, size[node]);
        }
        return merges;
    }

    /// <summary>The condensed tree: walking down from the root, a split into two parts of at least
    /// <paramref name="minClusterSize"/> points each births two clusters; a smaller part's points fall out of the cluster
    /// at that λ, and the cluster goes on as the larger part.</summary>
    static List<CondensedEdge> Condense(Merge[] merges, int n, int minClusterSize)
    {
        int root = 2 * n - 2;
        int Size(int node) => node < n ? 1 : merges[node - n].Size;
        var relabel = new int[2 * n - 1];
        relabel[root] = n;
        int nextLabel = n + 1;
        var ignore = new bool[2 * n - 1];
        var result = new List<CondensedEdge>();
        var queue = new Queue<int>();
        queue.Enqueue(root);

        void FallOut(int node, int cluster, double lambda)
        {
            var stack = new Stack<int>();
            stack.Push(node);
            while (stack.Count > 0)
            {
                int x = stack.Pop();
                if (x < n) { result.Add(new CondensedEdge(cluster, x, lambda, 1)); continue; }
                ignore[x] = true;
                stack.Push(merges[x - n].Left);
                stack.Push(merges[x - n].Right);
            }
        }

        while (queue.Count > 0) // breadth first, as the reference's bfs_from_hierarchy
        {
            int node = queue.Dequeue();
            if (node < n || ignore[node]) continue;
            var merge = merges[node - n];
            double lambda = merge.Distance > 0 ? 1 / merge.Distance : double.PositiveInfinity;
            int left = merge.Left, right = merge.Right;
            bool leftBig = Size(left) >= minClusterSize, rightBig = Size(right) >= minClusterSize;
            if (leftBig && rightBig)
            {
                relabel[left] = nextLabel++;
                result.Add(new CondensedEdge(relabel[node], relabel[left], lambda, Size(left)));
                relabel[right] = nextLabel++;
                result.Add(new CondensedEdge(relabel[node], relabel[right], lambda, Size(right)));
            }
            else if (!leftBig && !rightBig)
            {
                FallOut(left, relabel[node], lambda);
                FallOut(right, relabel[node], lambda);
            }
            else if (!leftBig)
            {
                relabel[right] = relabel[node];
                FallOut(left, relabel[node], lambda);
            }
            else
            {
                relabel[left] = relabel[node];
                FallOut(right, relabel[node], lambda);
            }
            queue.Enqueue(left);
            queue.Enqueue(right);
        }
        return result;
    }

    /// <summary>Excess of mass: a cluster's stability is Σ (λ_leave − λ_birth)·size over what leaves it; walking up from
    /// the youngest cluster, a parent is kept when it is at least as stable as its selected descendants together.</summary>
    static HashSet<int> SelectExcessOfMass(List<CondensedEdge> tree, int n, bool allowSingleCluster)
    {
        var birth = new Dictionary<int, double> { [n] = 0 };
        foreach (var e in tree)
            if (e.Child >= n) birth[e.Child] = e.Lambda;
        var stability = birth.Keys.ToDictionary(c => c, _ => 0.0);
        foreach (var e in tree)
        {
            double gap = e.Lambda == birth[e.Parent] ? 0 : e.Lambda - birth[e.Parent]; // ∞ − ∞ (born and left at d = 0) counts 0
            stability[e.Parent] += gap * e.ChildSize;
        }
        var children = tree.Where(e => e.Child >= n).ToLookup(e => e.Parent, e => e.Child);
        var candidates = stability.Keys.OrderByDescending(c => c).Where(c => allowSingleCluster || c != n).ToList();
        var isCluster = candidates.ToDictionary(c => c, _ => true);
        foreach (int node in candidates)
        {
            double subtree = children[node].Sum(c => stability[c]);
            if (subtree > stability[node])
            {
                isCluster[node] = false;
                stability[node] = subtree;
            }
            else
            {
                var stack = new Stack<int>(children[node]);
                while (stack.Count > 0)
                {
                    int c = stack.Pop();
                    if (isCluster.ContainsKey(c)) isCluster[c] = false;
                    foreach (int g in children[c]) stack.Push(g);
                }
            }
        }
        return isCluster.Where(kv => kv.Value).Select(kv => kv.Key).ToHashSet();
    }

    /// <summary>Each point's label: its nearest selected ancestor cluster; under a selected root (the single cluster),
    /// only the points that stay until the root's last λ (the reference's rule), the rest noise.</summary>
    static int[] Label(List<CondensedEdge> tree, int n, HashSet<int> selected, bool allowSingleCluster)
    {
        var labelOf = selected.Order().Select((c, i) => (c, i)).ToDictionary(x => x.c, x => x.i);
        var parentOf = tree.ToDictionary(e => e.Child, e => e.Parent);
        var lambdaOf = tree.ToDictionary(e => e.Child, e => e.Lambda);
        double rootLast = tree.Where(e => e.Parent == n).Select(e => e.Lambda).DefaultIfEmpty(0).Max();
        var labels = new int[n];
        for (int p = 0; p < n; p++)
        {
            int cluster = parentOf[p];
            while (cluster != n && !selected.Contains(cluster)) cluster = parentOf[cluster];
            if (cluster != n) labels[p] = labelOf[cluster];
            else if (selected.Contains(n) && selected.Count == 1 && allowSingleCluster && lambdaOf[p] >= rootLast) labels[p] = labelOf[n];
            else labels[p] = Noise;
        }
        return labels;
    }
}
