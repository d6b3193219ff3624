using FedLlm.Evaluation.Metrics;

namespace FedLlm.Tests.Evaluation;

public class ClassificationMetricsTests
{
    // Confusion (rows = truth): negative → {negative 1, positive 1}; neutral → {positive 1}; positive → {positive 3, negative 1}.
    static readonly string[] Truth = ["positive", "positive", "positive", "positive", "negative", "negative", "neutral"];
    static readonly string[] Predicted = ["positive", "positive", "positive", "negative", "negative", "positive", "positive"];

    [Fact]
    public void Scores_match_a_hand_computed_confusion_matrix_where_macro_and_weighted_differ()
    {
        // negative: P 1/2, R 1/2, F1 1/2 (support 2); neutral: F1 0 (support 1); positive: P 3/5, R 3/4, F1 2/3 (support 4).
        double fNegative = 0.5, fNeutral = 0, fPositive = 2 * 0.6 * 0.75 / (0.6 + 0.75);
        Assert.Equal(4.0 / 7, ClassificationMetrics.Accuracy(Truth, Predicted), 12);
        Assert.Equal((fNegative + fNeutral + fPositive) / 3, ClassificationMetrics.MacroF1(Truth, Predicted), 12);
        Assert.Equal((2 * fNegative + 1 * fNeutral + 4 * fPositive) / 7, ClassificationMetrics.WeightedF1(Truth, Predicted), 12);
        Assert.NotEqual(ClassificationMetrics.MacroF1(Truth, Predicted), ClassificationMetrics.WeightedF1(Truth, Predicted), 3);
    }

    [Fact]
    public void A_class_only_predicted_counts_in_macro_but_not_in_weighted()
    {
        // sklearn: labels = union of truth and predictions; "b" has F1 0 and support 0.
        string[] truth = ["a", "a"], predicted = ["a", "b"];
        Assert.Equal((2.0 / 3 + 0) / 2, ClassificationMetrics.MacroF1(truth, predicted), 12);
        Assert.Equal(2.0 / 3, ClassificationMetrics.WeightedF1(truth, predicted), 12);
    }

    [Fact]
    public void Macro_F1_over_the_true_answers_counts_a_stray_answer_against_recall_without_adding_a_class()
    {
        // pos: P 1/1, R 1/2, F1 2/3; neg: P 1/2, R 1, F1 2/3; neu: F1 0 → 4/9. With "garbage" as a class of its own: 1/3.
        string[] truth = ["pos", "pos", "neg", "neu"], predicted = ["pos", "neg", "neg", "garbage"];
        Assert.Equal(4.0 / 9, ClassificationMetrics.MacroF1OverTrueLabels(truth, predicted), 12);
        Assert.Equal(1.0 / 3, ClassificationMetrics.MacroF1(truth, predicted), 12);
    }

    [Fact]
    public void The_majority_share_is_what_a_constant_answer_scores()
    {
        Assert.Equal(0.5, ClassificationMetrics.MajorityShare(["a", "b", "a", "c"]));
        string[] truth = ["a", "b", "a", "c"];
        Assert.Equal(0.5, ClassificationMetrics.Accuracy(truth, ["a", "a", "a", "a"]));
    }

    [Fact]
    public void Mismatched_lengths_are_an_error()
    {
        Assert.Throws<ArgumentException>(() => ClassificationMetrics.Accuracy(["a"], ["a", "b"]));
    }
}
