namespace FedLlm.Evaluation.Metrics;

/// <summary>Accuracy, macro-F1 and weighted-F1 of predicted class labels, as scikit-learn computes them.</summary>
/// <remarks>
/// The label set is the sorted union of the true and predicted labels (sklearn's <c>unique_labels</c>), so a class that
/// is only ever predicted counts in the macro average with F1 = 0. A class with no true and no predicted items cannot
/// occur; precision or recall with a zero denominator is 0 (sklearn's <c>zero_division="warn"</c> result).
/// Weighted-F1 weights each class's F1 by its support (true count), which is what BloombergGPT and FinGPT report.
/// </remarks>
public static class ClassificationMetrics
{
    /// <summary>The share of positions where the prediction equals the label.</summary>
    public static double Accuracy(IReadOnlyList<string> truth, IReadOnlyList<string> predicted)
    {
        CheckLengths(truth, predicted);
        return (double)truth.Zip(predicted).Count(p => p.First == p.Second) / truth.Count;
    }

    /// <summary>Per-class F1 and support, in sorted label order.</summary>
    public static IReadOnlyList<(string Label, double F1, int Support)> PerClass(IReadOnlyList<string> truth, IReadOnlyList<string> predicted)
    {
        CheckLengths(truth, predicted);
        var labels = truth.Concat(predicted).Distinct().Order(StringComparer.Ordinal).ToList();
        return labels.Select(label =>
        {
            int tp = truth.Zip(predicted).Count(p => p.First == label && p.Second == label);
            int predictedCount = predicted.Count(p => p == label);
            int support = truth.Count(t => t == label);
            double precision = predictedCount == 0 ? 0 : (double)tp / predictedCount;
            double recall = support == 0 ? 0 : (double)tp / support;
            double f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
            return (label, f1, support);
        }).ToList();
    }

    /// <summary>sklearn's f1_score(average="macro"): the unweighted mean of the F1 of each label seen in the true
    /// labels or the predictions.</summary>
    public static double MacroF1(IReadOnlyList<string> truth, IReadOnlyList<string> predicted) =>
        PerClass(truth, predicted).Average(c => c.F1);

    /// <summary>
    /// Macro-F1 over the true labels only (sklearn's <c>f1_score(average="macro", labels=sorted(set(truth)))</c>): a
    /// free-form answer that is no true label counts against the true label's recall, without adding a class of its own.
    /// </summary>
    public static double MacroF1OverTrueLabels(IReadOnlyList<string> truth, IReadOnlyList<string> predicted) =>
        PerClass(truth, predicted).Where(c => c.Support > 0).Average(c => c.F1);

    /// <summary>The share of the most common true label: the exact match of a model that always gives that answer.</summary>
    public static double MajorityShare(IReadOnlyList<string> truth)
    {
        if (truth.Count == 0) throw new ArgumentException("no items to score");
        return (double)truth.GroupBy(t => t, StringComparer.Ordinal).Max(g => g.Count()) / truth.Count;
    }

    /// <summary>sklearn's f1_score(average="weighted"): the mean of each true label's F1 weighted by its
    /// support.</summary>
    public static double WeightedF1(IReadOnlyList<string> truth, IReadOnlyList<string> predicted)
    {
        var classes = PerClass(truth, predicted);
        return classes.Sum(c => c.F1 * c.Support) / classes.Sum(c => c.Support);
    }

    static void CheckLengths(IReadOnlyList<string> truth, IReadOnlyList<string> predicted)
    {
        if (truth.Count != predicted.Count)
            throw new ArgumentException($"{truth.Count} true labels but {predicted.Count} predictions");
        if (truth.Count == 0) throw new ArgumentException("no items to score");
    }
}
