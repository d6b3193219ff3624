using FedLlm.Evaluation.Metrics;

namespace FedLlm.Tests.Evaluation;

public class MultipleChoiceScoringTests
{
    [Fact]
    public void Acc_norm_divides_by_the_choices_bytes_without_the_joining_space()
    {
        // "ab" (2 bytes) −1.0 → −0.5; "abc" (3 bytes) −1.4 → −0.467: acc picks 0, acc_norm picks 1.
        // (Counting the joining space, 3 and 4 bytes, acc_norm would pick 0.)
        Assert.Equal(new MultipleChoicePick(0, 1), MultipleChoiceScoring.Pick([-1.0, -1.4], [" ab", " abc"]));
        // "é" is 2 UTF-8 bytes (1 char): −1.5/2 = −0.75 beats −1.6/2 = −0.8; per character it would lose.
        Assert.Equal(new MultipleChoicePick(0, 0), MultipleChoiceScoring.Pick([-1.5, -1.6], [" é", " ab"]));
        // Ties go to the first choice, as numpy's argmax.
        Assert.Equal(new MultipleChoicePick(0, 0), MultipleChoiceScoring.Pick([-1.0, -1.0], [" a", " b"]));
    }
}
