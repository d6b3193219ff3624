using FedLlm.Defaults;
using Xunit;

namespace FedLlm.Tests.Defaults;

public sealed class ExactMatchTests
{
    [Theory]
    [InlineData(" positive", "positive", true)]
    [InlineData("positive\n", "positive", true)]
    [InlineData("Positive", "positive", false)]
    [InlineData("positive or negative", "positive", false)]
    [InlineData("", "positive", false)]
    public void Only_surrounding_whitespace_is_ignored(string prediction, string reference, bool expected)
    {
        Assert.Equal(expected, ExactMatch.IsMatch(prediction, reference));
    }

    [Fact]
    public void Accuracy_is_the_fraction_of_matches()
    {
        Assert.Equal(0.75, ExactMatch.Accuracy([" a", "b", "c", "x"], ["a", "b", "c", "d"]));
        Assert.Throws<ArgumentException>(() => ExactMatch.Accuracy(["a"], ["a", "b"]));
    }
}
