using System.Text.RegularExpressions;

namespace FedLlm.Evaluation.Metrics;

/// <summary>
/// sacrebleu's default "13a" tokenizer (mteval-v13a.pl): unescape a few HTML entities, split off punctuation and
/// symbols, split periods and commas except inside numbers, split a dash after a digit, collapse whitespace.
/// </summary>
public static partial class Tokenizer13a
{
    /// <summary>The tokens of <paramref name="line"/>, joined by single spaces.</summary>
    public static string Tokenize(string line)
    {
        line = line.Replace("<skipped>", "").Replace("-\n", "").Replace("\n", " ");
        if (line.Contains('&'))
            line = line.Replace("&quot;", "\"").Replace("&amp;", "&").Replace("&lt;", "<").Replace("&gt;", ">");
        line = " " + line + " ";
        line = Symbols().Replace(line, " $1 ");
        line = PeriodCommaAfterNonDigit().Replace(line, "$1 $2 ");
        line = PeriodCommaBeforeNonDigit().Replace(line, " $1 $2");
        line = DashAfterDigit().Replace(line, "$1 $2 ");
        return string.Join(' ', line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
    }

    // The character ranges of mteval's rule: {|}~, [\]^_`, space to &, ( to +, : to @, and /.
    [GeneratedRegex(@"([\{-\~\[-\` -\&\(-\+\:-\@\/])")] private static partial Regex Symbols();
    [GeneratedRegex(@"([^0-9])([\.,])")] private static partial Regex PeriodCommaAfterNonDigit();
    [GeneratedRegex(@"([\.,])([^0-9])")] private static partial Regex PeriodCommaBeforeNonDigit();
    [GeneratedRegex(@"([0-9])(-)")] private static partial Regex DashAfterDigit();
}
