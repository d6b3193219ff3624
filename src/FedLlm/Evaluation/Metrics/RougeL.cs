using System.Text.RegularExpressions;

namespace FedLlm.Evaluation.Metrics;

/// <summary>Precision, recall and F-measure of one ROUGE comparison.</summary>
public sealed record RougeScore(double Precision, double Recall, double FMeasure);

/// <summary>
/// ROUGE-L as Google's rouge_score package computes it (RougeScorer(["rougeL"]), no stemmer): lowercase, every run of
/// characters other than a–z and 0–9 becomes a space, split on spaces; then the longest common subsequence of the
/// token lists gives P = LCS/|prediction|, R = LCS/|reference| and F = 2PR/(P+R).
/// </summary>
/// <remarks>Lin 2004, "ROUGE: A Package for Automatic Evaluation of Summaries". Either side empty scores 0.</remarks>
public static partial class RougeL
{
    /// <summary>rouge_score's tokens: lowercase, runs of characters other than a–z and 0–9 become spaces, split on
    /// spaces.</summary>
    public static IReadOnlyList<string> Tokenize(string text) =>
        NonAlphanumeric().Replace(text.ToLowerInvariant(), " ").Split(' ', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>ROUGE-L of <paramref name="prediction"/> against <paramref name="reference"/>; 0 when either has no
    /// token.</summary>
    public static RougeScore Score(string reference, string prediction)
    {
        var target = Tokenize(reference);
        var output = Tokenize(prediction);
        if (target.Count == 0 || output.Count == 0) return new RougeScore(0, 0, 0);
        int lcs = LongestCommonSubsequence(target, output);
        double precision = (double)lcs / output.Count, recall = (double)lcs / target.Count;
        double f = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
        return new RougeScore(precision, recall, f);
    }

    /// <summary>Length of the longest common subsequence of two token lists.</summary>
    public static int LongestCommonSubsequence(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        // Two rows of the DP table are enough for the length.
        var previous = new int[b.Count + 1];
        var current = new int[b.Count + 1];
        for (int i = 1; i <= a.Count; i++)
        {
            for (int j = 1; j <= b.Count; j++)
                current[j] = a[i - 1] == b[j - 1] ? previous[j - 1] + 1 : Math.Max(previous[j], current[j - 1]);
            (previous, current) = (current, previous);
        }
        return previous[b.Count];
    }

    [GeneratedRegex("[^a-z0-9]+")] private static partial Regex NonAlphanumeric();
}
