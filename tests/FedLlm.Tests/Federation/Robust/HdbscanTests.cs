using FedLlm.Federation.Robust;

namespace FedLlm.Tests.Federation.Robust;

public class HdbscanTests
{
    /// <summary>|x_a − x_b| for points on a line.</summary>
    static double[,] OnALine(params double[] x)
    {
        var d = new double[x.Length, x.Length];
        for (int a = 0; a < x.Length; a++)
            for (int b = 0; b < x.Length; b++) d[a, b] = Math.Abs(x[a] - x[b]);
        return d;
    }

    [Fact]
    public void Two_well_separated_groups_are_two_clusters()
    {
        // 0, 1, 2 | 10, 11 with min_cluster_size 2: the root splits at d = 8 into {0,1,2} and {10,11}, both born at λ = 1/8;
        // every point leaves at d = 1 (λ = 1). Stabilities: 3·(1 − 1/8) = 21/8 and 2·(7/8) = 14/8 against the root's
        // 5·(1/8) = 5/8, so the two children are selected, with or without allow_single_cluster.
        var d = OnALine(0, 1, 2, 10, 11);
        Assert.Equal(new[] { 0, 0, 0, 1, 1 }, Hdbscan.Cluster(d, 2, allowSingleCluster: false));
        Assert.Equal(new[] { 0, 0, 0, 1, 1 }, Hdbscan.Cluster(d, 2, allowSingleCluster: true));
    }

    [Fact]
    public void One_outlier_is_noise_and_the_rest_one_cluster_only_when_a_single_cluster_is_allowed()
    {
        // 0, 1, 2, 3, 50 with min_cluster_size 2: 50 falls out of the root at λ = 1/47, and {0..3} never splits into two
        // parts of 2 (it sheds one point at a time at d = 1), so the root is the only cluster. Without
        // allow_single_cluster there is none; with it, the points still there at the root's last λ (= 1) form it.
        var d = OnALine(0, 1, 2, 3, 50);
        Assert.Equal(new[] { -1, -1, -1, -1, -1 }, Hdbscan.Cluster(d, 2, allowSingleCluster: false));
        Assert.Equal(new[] { 0, 0, 0, 0, -1 }, Hdbscan.Cluster(d, 2, allowSingleCluster: true));
    }

    [Fact]
    public void Identical_points_are_one_cluster()
    {
        // Every distance 0: every λ is ∞ and every point stays to the end.
        Assert.Equal(new[] { 0, 0, 0, 0 }, Hdbscan.Cluster(new double[4, 4], 3, allowSingleCluster: true));
    }

    [Fact]
    public void With_a_majority_min_cluster_size_the_cluster_is_the_tightest_majority()
    {
        // 0, 1, 3, 6, 20 with min_cluster_size ⌊5/2⌋ + 1 = 3: single linkage joins at 1 (0–1), 2 (1–3), 3 (3–6), 14 (6–20);
        // the first component of 3 points, {0, 1, 3}, appears at d = 2; 6 (λ = 1/3) and 20 (λ = 1/14) left before.
        Assert.Equal(new[] { 0, 0, 0, -1, -1 }, Hdbscan.Cluster(OnALine(0, 1, 3, 6, 20), 3, allowSingleCluster: true));
        // One point and two: n = 1 is its own cluster; n = 2 (min_cluster_size 2) keeps both.
        Assert.Equal(new[] { 0 }, Hdbscan.Cluster(new double[1, 1], 1, allowSingleCluster: true));
        Assert.Equal(new[] { 0, 0 }, Hdbscan.Cluster(OnALine(0, 5), 2, allowSingleCluster: true));
    }

    [Theory]
    [InlineData(1, 5)]
    [InlineData(2, 6)]
    [InlineData(3, 9)]
    [InlineData(4, 20)]
    [InlineData(5, 7)]
    public void With_a_majority_min_cluster_size_it_matches_the_first_majority_component_whatever_the_order(int seed, int n)
    {
        // Random points in the plane, some duplicated so that distances tie; the brute-force answer grows a threshold over
        // the sorted distances and stops at the first connected component (edges ≤ threshold) of ⌊n/2⌋ + 1 points.
        var random = new Random(seed);
        var points = Enumerable.Range(0, n).Select(_ => (x: Math.Round(random.NextDouble() * 10), y: Math.Round(random.NextDouble() * 10))).ToArray();
        points[n - 1] = points[0];
        double[,] Distances(int[] perm)
        {
            var d = new double[n, n];
            for (int a = 0; a < n; a++)
                for (int b = 0; b < n; b++)
                    d[a, b] = Math.Sqrt(Math.Pow(points[perm[a]].x - points[perm[b]].x, 2) + Math.Pow(points[perm[a]].y - points[perm[b]].y, 2));
            return d;
        }
        var identity = Enumerable.Range(0, n).ToArray();
        var expected = FirstMajorityComponent(Distances(identity), n / 2 + 1);
        var labels = Hdbscan.Cluster(Distances(identity), n / 2 + 1, allowSingleCluster: true);
        Assert.Equal(expected, labels.Select(l => l == 0).ToArray());
        Assert.DoesNotContain(labels, l => l > 0);

        var perm = identity.OrderBy(_ => random.Next()).ToArray();
        var permuted = Hdbscan.Cluster(Distances(perm), n / 2 + 1, allowSingleCluster: true);
        for (int k = 0; k < n; k++) Assert.Equal(labels[perm[k]], permuted[k]);
    }

    static bool[] FirstMajorityComponent(double[,] d, int size)
    {
        int n = d.GetLength(0);
        foreach (double threshold in Enumerable.Range(0, n * n).Select(k => d[k / n, k % n]).Distinct().Order())
        {
            var component = new int[n];
            for (int i = 0; i < n; i++) component[i] = i;
            for (bool changed = true; changed;)
            {
                changed = false;
                for (int a = 0; a < n; a++)
                    for (int b = 0; b < n; b++)
                        if (d[a, b] <= threshold && component[b] < component[a]) { component[a] = component[b]; changed = true; }
            }
            var big = component.GroupBy(c => c).FirstOrDefault(g => g.Count() >= size);
            if (big is not null) return component.Select(c => c == big.Key).ToArray();
        }
        throw new InvalidOperationException("unreachable: at the largest distance all points are one component");
    }

    [Fact]
    public void Bad_matrices_are_refused()
    {
        Assert.Throws<ArgumentException>(() => Hdbscan.Cluster(new double[2, 3], 2, true));
        Assert.Throws<ArgumentException>(() => Hdbscan.Cluster(new double[,] { { 0, 1 }, { 2, 0 } }, 2, true));
        Assert.Throws<ArgumentException>(() => Hdbscan.Cluster(new double[,] { { 0, double.NaN }, { double.NaN, 0 } }, 2, true));
        Assert.Throws<ArgumentOutOfRangeException>(() => Hdbscan.Cluster(new double[2, 2], 0, true));
    }
}
