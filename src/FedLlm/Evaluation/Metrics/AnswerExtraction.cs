using System.Text.RegularExpressions;

namespace FedLlm.Evaluation.Metrics;

/// <summary>Pulls the answer out of generated text, as lm-evaluation-harness's filters for GSM8K and BBH do.</summary>
public static partial class AnswerExtraction
{
    /// <summary>GSM8K "strict-match": the number after "#### " (the format the reference answers use), else null.</summary>
    public static string? Gsm8kStrict(string output)
    {
        var match = StrictNumber().Match(output);
        return match.Success ? NormalizeNumber(match.Groups[1].Value) : null;
    }

    /// <summary>
    /// GSM8K "flexible-extract": the last number in the output (lm-eval's <c>(-?[$0-9.,]{2,})|(-?[0-9]+)</c>, last
    /// match), else null.
    /// </summary>
    public static string? Gsm8kFlexible(string output)
    {
        var matches = FlexibleNumber().Matches(output);
        if (matches.Count == 0) return null;
        var last = matches[^1];
        return NormalizeNumber(last.Groups[1].Success ? last.Groups[1].Value : last.Groups[2].Value);
    }

    /// <summary>The reference of a GSM8K answer: the number after "####".</summary>
    /// <exception cref="FormatException">The answer has no "####" line.</exception>
    public static string Gsm8kReference(string answer)
    {
        int at = answer.LastIndexOf("####", StringComparison.Ordinal);
        if (at < 0) throw new FormatException("the answer has no '#### <number>' line");
        return NormalizeNumber(answer[(at + 4)..].Trim());
    }

    /// <summary>lm-eval's regexes_to_ignore for GSM8K: commas and dollar signs dropped, a trailing period dropped.</summary>
    public static string NormalizeNumber(string text)
    {
        text = text.Replace(",", "").Replace("$", "").Trim();
        return text.EndsWith('.') ? text[..^1] : text;
    }

    /// <summary>
    /// BBH chain-of-thought: the text after "the answer is " up to the last character (lm-eval's
    /// <c>(?&lt;=the answer is )(.*)(?=.)</c>, which drops the closing period); without that phrase, the first non-empty line.
    /// </summary>
    public static string Bbh(string output)
    {
        var match = AnswerIs().Match(output);
        if (match.Success) return match.Groups[1].Value.Trim();
        return output.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0) ?? "";
    }

    /// <summary>The first capture group of <paramref name="pattern"/> (the whole match if it has none), else null.</summary>
    public static string? Regex(string output, Regex pattern)
    {
        var match = pattern.Match(output);
        if (!match.Success) return null;
        return (match.Groups.Count > 1 ? match.Groups[1].Value : match.Value).Trim();
    }

    [GeneratedRegex(@"#### (\-?[0-9\.\,]+)")] private static partial Regex StrictNumber();
    [GeneratedRegex(@"(-?[$0-9.,]{2,})|(-?[0-9]+)")] private static partial Regex FlexibleNumber();
    [GeneratedRegex(@"(?<=the answer is )(.*)(?=.)")] private static partial Regex AnswerIs();
}
