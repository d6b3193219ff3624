using System.Globalization;
using System.Text.RegularExpressions;

namespace FedLlm.Evaluation.Judge;

/// <summary>
/// The rating in a judge's text, as FastChat's run_judge_single parses it: the first <c>[[x]]</c>, else the first
/// <c>[x]</c>, x an unsigned number in ASCII digits (Python 3's \d also takes other scripts' digits, which no judge writes); −1 when there is neither (such judgments are excluded from means).
/// </summary>
public static partial class JudgeScoreParser
{
    /// <summary>The score of a judgment in which no rating was found.</summary>
    public const double NoScore = -1;

    /// <summary>The rating in a judge's text: the first <c>[[x]]</c>, else the first <c>[x]</c>; <see cref="NoScore"/>
    /// when there is neither.</summary>
    public static double Parse(string judgment)
    {
        ArgumentNullException.ThrowIfNull(judgment);
        var match = DoubleBracket().Match(judgment);
        if (!match.Success) match = SingleBracket().Match(judgment);
        return match.Success ? double.Parse(match.Groups[1].Value, NumberStyles.Float, CultureInfo.InvariantCulture) : NoScore;
    }

    [GeneratedRegex(@"\[\[([0-9]+\.?[0-9]*)\]\]")]
    private static partial Regex DoubleBracket();

    [GeneratedRegex(@"\[([0-9]+\.?[0-9]*)\]")]
    private static partial Regex SingleBracket();
}
