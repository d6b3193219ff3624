using System.Text.RegularExpressions;

namespace FedLlm.Evaluation.Code;

/// <summary>Whether a name from a data file can be pasted into a program as a plain Python name, and nothing more.</summary>
public static partial class PythonIdentifier
{
    // Python 3's hard keywords; soft keywords (match, case, type, _) are valid names.
    private static readonly HashSet<string> Keywords = new(StringComparer.Ordinal)
    {
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif",
        "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal", "not", "or",
        "pass", "raise", "return", "try", "while", "with", "yield",
    };

    /// <summary>
    /// An ASCII identifier that is not a keyword. Python also accepts non-ASCII letters, but no benchmark's function
    /// names use them, and the narrower rule leaves nothing to doubt.
    /// </summary>
    public static bool IsValid(string? name) => name is not null && AsciiIdentifier().IsMatch(name) && !Keywords.Contains(name);

    [GeneratedRegex(@"\A[A-Za-z_][A-Za-z0-9_]*\z")]
    private static partial Regex AsciiIdentifier();
}
