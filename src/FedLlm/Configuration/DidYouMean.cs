namespace FedLlm.Configuration;

/// <summary>The closest known name to a misspelt one, for "did you mean …?" hints on options, keys and values.</summary>
public static class DidYouMean
{
    /// <summary>The candidate nearest to <paramref name="given"/> by edit distance (case-insensitive), or null when none is
    /// close: a distance of at most a third of the longer name (at least 2), or one name containing the other.</summary>
    public static string? Closest(string given, IEnumerable<string> candidates)
    {
        string g = given.ToLowerInvariant();
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (var candidate in candidates.Distinct())
        {
            string c = candidate.ToLowerInvariant();
            int distance = Distance(g, c);
            int allowed = Math.Max(2, Math.Max(g.Length, c.Length) / 3);
            bool related = distance <= allowed || (g.Length >= 3 && (c.Contains(g) || g.Contains(c)));
            if (related && distance < bestDistance)
            {
                best = candidate;
                bestDistance = distance;
            }
        }
        return best;
    }

    /// <summary>" (did you mean X?)" or "" when nothing is close.</summary>
    public static string Hint(string given, IEnumerable<string> candidates, string prefix = "") =>
        Closest(given, candidates) is { } c ? $" (did you mean {prefix}{c}?)" : "";

    /// <summary>Levenshtein distance with adjacent transpositions counted as one edit.</summary>
    public static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        }
        return d[a.Length, b.Length];
    }
}
