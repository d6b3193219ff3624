namespace FedLlm.Network.Server;

/// <summary>
/// A bound on each update's size relative to its round: ‖y_i − x‖ may be at most <c>ratio</c> × the median of the
/// round's norms. A fixed <c>max_update_norm</c> needs the operator to know how far honest clients move, which changes
/// with the learning rate and the round; the median moves with them, and one scaled-up update cannot drag it along.
/// </summary>
public static class RoundNormScreen
{
    /// <summary>Fewest updates the bound applies to: with two, the median is the mean of the honest norm and the outlier's own.</summary>
    public const int MinUpdates = 3;

    /// <summary>The updates above <paramref name="ratio"/> × median, each with the reason it is refused; empty when
    /// fewer than <see cref="MinUpdates"/> norms are given.</summary>
    public static IReadOnlyDictionary<string, string> Outliers(IReadOnlyDictionary<string, double> norms, double ratio)
    {
        var refused = new Dictionary<string, string>(StringComparer.Ordinal);
        if (norms.Count < MinUpdates) return refused;
        double median = Median(norms.Values);
        double bound = ratio * median;
        foreach (var (id, norm) in norms.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            if (!(norm <= bound))
                refused[id] = $"update norm {norm:G4} exceeds {ratio:G4} × the round's median norm {median:G4}";
        return refused;
    }

    /// <summary>The middle value; the mean of the two middle ones for an even count.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) throw new ArgumentException("the median of no values");
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
