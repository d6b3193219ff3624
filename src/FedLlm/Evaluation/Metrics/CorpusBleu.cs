namespace FedLlm.Evaluation.Metrics;

/// <summary>How BLEU treats an n-gram order with no match (sacrebleu's <c>smooth_method</c>).</summary>
public enum BleuSmoothing
{
    /// <summary>sacrebleu's default: the k-th order without a match gets precision 100 / (2^k · total).</summary>
    Exp,

    /// <summary>No smoothing: any order without a match makes the score 0 (Papineni et al.'s original).</summary>
    None,
}

/// <summary>The corpus BLEU score and the statistics it comes from.</summary>
/// <param name="Score">BLEU on sacrebleu's 0–100 scale.</param>
/// <param name="Precisions">Modified n-gram precisions (0–100), orders 1..4, after smoothing.</param>
/// <param name="BrevityPenalty">exp(1 − r/c) when the hypotheses are shorter than the references, else 1.</param>
/// <param name="HypothesisLength">c, the hypotheses' summed token count.</param>
/// <param name="ReferenceLength">r, the summed closest reference lengths.</param>
public sealed record BleuResult(double Score, IReadOnlyList<double> Precisions, double BrevityPenalty, int HypothesisLength, int ReferenceLength);

/// <summary>
/// Corpus BLEU as sacrebleu computes it by default: 13a tokenization, case-sensitive, n-grams up to 4, counts summed
/// over the whole corpus before the precisions are taken, brevity penalty from the summed lengths (closest reference
/// length per sentence, the shorter one on a tie), exp smoothing.
/// </summary>
/// <remarks>Papineni et al. 2002, "BLEU: a method for automatic evaluation of machine translation"; Post 2018,
/// "A Call for Clarity in Reporting BLEU Scores" (sacrebleu).</remarks>
public static class CorpusBleu
{
    /// <summary>The highest n-gram order (4).</summary>
    public const int MaxOrder = 4;

    /// <param name="hypotheses">One system output per item.</param>
    /// <param name="references">One or more references per item.</param>
    /// <param name="smoothing">How orders without a match are smoothed (exp, as sacrebleu).</param>
    public static BleuResult Compute(IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string>> references, BleuSmoothing smoothing = BleuSmoothing.Exp)
    {
        if (hypotheses.Count != references.Count)
            throw new ArgumentException($"{hypotheses.Count} hypotheses but {references.Count} reference lists");
        var correct = new long[MaxOrder];
        var total = new long[MaxOrder];
        int hypLength = 0, refLength = 0;
        for (int i = 0; i < hypotheses.Count; i++)
        {
            if (references[i].Count == 0) throw new ArgumentException($"item {i} has no reference");
            var hyp = Tokenizer13a.Tokenize(hypotheses[i]).Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var refs = references[i].Select(r => Tokenizer13a.Tokenize(r).Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToList();
            hypLength += hyp.Length;
            // The closest reference length; on a tie the shorter one (sacrebleu's _get_closest_ref_len).
            refLength += refs.Select(r => r.Length).OrderBy(l => Math.Abs(l - hyp.Length)).ThenBy(l => l).First();
            for (int n = 1; n <= MaxOrder; n++)
            {
                var hypCounts = NGrams(hyp, n);
                var maxRef = new Dictionary<string, int>();
                foreach (var r in refs)
                    foreach (var (gram, count) in NGrams(r, n))
                        maxRef[gram] = Math.Max(maxRef.GetValueOrDefault(gram), count);
                correct[n - 1] += hypCounts.Sum(g => Math.Min(g.Value, maxRef.GetValueOrDefault(g.Key)));
                total[n - 1] += Math.Max(0, hyp.Length - n + 1);
            }
        }
        return Score(correct, total, hypLength, refLength, smoothing);
    }

    /// <summary>sacrebleu's compute_bleu from summed statistics.</summary>
    public static BleuResult Score(long[] correct, long[] total, int hypLength, int refLength, BleuSmoothing smoothing)
    {
        var precisions = new double[MaxOrder];
        double smoothFactor = 1;
        for (int n = 0; n < MaxOrder; n++)
        {
            if (total[n] == 0) break; // a corpus shorter than n tokens: this and higher orders stay 0
            if (correct[n] == 0 && smoothing == BleuSmoothing.Exp)
            {
                smoothFactor *= 2;
                precisions[n] = 100.0 / (smoothFactor * total[n]);
            }
            else precisions[n] = 100.0 * correct[n] / total[n];
        }
        double bp = hypLength >= refLength ? 1.0 : hypLength > 0 ? Math.Exp(1 - (double)refLength / hypLength) : 0.0;
        double score = precisions.Any(p => p == 0) ? 0 : bp * Math.Exp(precisions.Average(p => Math.Log(p / 100))) * 100;
        return new BleuResult(score, precisions, bp, hypLength, refLength);
    }

    static Dictionary<string, int> NGrams(string[] tokens, int n)
    {
        var counts = new Dictionary<string, int>();
        for (int i = 0; i + n <= tokens.Length; i++)
        {
            string gram = string.Join(' ', tokens, i, n);
            counts[gram] = counts.GetValueOrDefault(gram) + 1;
        }
        return counts;
    }
}
