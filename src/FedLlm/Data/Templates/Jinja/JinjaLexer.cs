using System.Globalization;
using System.Text;

namespace FedLlm.Data.Templates.Jinja;

/// <summary>A piece of template source: literal text, an output tag's tokens, or a statement tag's tokens.</summary>
internal abstract record Segment;

internal sealed record TextSegment(string Text) : Segment;

internal sealed record OutputSegment(IReadOnlyList<Token> Tokens) : Segment;

internal sealed record StatementSegment(IReadOnlyList<Token> Tokens) : Segment;

internal enum TokenKind
{
    Name,
    String,
    Integer,
    Float,
    Operator,
}

internal readonly record struct Token(TokenKind Kind, string Text, object? Value = null)
{
    public bool Is(string op) => Kind == TokenKind.Operator && Text == op;

    public bool IsName(string name) => Kind == TokenKind.Name && Text == name;

    public override string ToString() => Text;
}

/// <summary>
/// Splits a template into text and tags, with the whitespace rules Hugging Face's chat templates are rendered with:
/// <c>trim_blocks</c> and <c>lstrip_blocks</c> on (transformers' <c>ImmutableSandboxedEnvironment(trim_blocks=True,
/// lstrip_blocks=True)</c>), and Jinja's <c>-</c> markers.
/// </summary>
/// <remarks>
/// trim_blocks drops the first newline after a statement or comment tag; lstrip_blocks drops the spaces and tabs
/// between a line's start and a statement or comment tag. <c>{%-</c>/<c>-%}</c> (and the same on output tags) strip all
/// whitespace, newlines included, on that side.
/// </remarks>
internal static class JinjaLexer
{
    private static readonly string[] Operators =
    [
        "**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}",
        ",", ".", ":", "|",
    ];

    public static List<Segment> Tokenize(string source)
    {
        var segments = new List<Segment>();
        var text = new StringBuilder();
        var i = 0;
        var stripNextText = false;
        var trimNextNewline = false;
        while (i < source.Length)
        {
            var open = FindTagStart(source, i);
            var chunk = source[i..(open < 0 ? source.Length : open)];
            if (stripNextText) chunk = chunk.TrimStart();
            else if (trimNextNewline) chunk = chunk.StartsWith("\r\n", StringComparison.Ordinal) ? chunk[2..] : chunk.StartsWith('\n') ? chunk[1..] : chunk;
            stripNextText = trimNextNewline = false;
            if (open < 0)
            {
                AddText(segments, chunk);
                break;
            }

            var kind = source[open + 1];
            var leftStrip = open + 2 < source.Length && source[open + 2] == '-';
            var leftKeep = open + 2 < source.Length && source[open + 2] == '+';
            if (leftStrip) chunk = chunk.TrimEnd();
            else if (kind != '{' && !leftKeep) chunk = LStripBlock(chunk);
            AddText(segments, chunk);

            var close = kind switch { '{' => "}}", '%' => "%}", _ => "#}" };
            var bodyStart = open + 2 + (leftStrip || leftKeep ? 1 : 0);
            var end = kind == '#' ? source.IndexOf(close, bodyStart, StringComparison.Ordinal) : FindClose(source, bodyStart, close);
            if (end < 0) throw new JinjaException($"unclosed tag starting at offset {open}");
            var rightStrip = end > bodyStart && source[end - 1] == '-';
            var body = source[bodyStart..(rightStrip ? end - 1 : end)];
            i = end + 2;
            stripNextText = rightStrip;
            trimNextNewline = !rightStrip && kind != '{';

            if (kind == '#') continue;
            var tokens = TokenizeExpression(body);
            if (kind == '{') segments.Add(new OutputSegment(tokens));
            else if (tokens.Count > 0 && tokens[0].IsName("raw"))
            {
                var endRaw = FindEndRaw(source, i, out var afterEndRaw, out var endRawStrip);
                var raw = source[i..endRaw];
                if (rightStrip) raw = raw.TrimStart();
                AddText(segments, raw);
                i = afterEndRaw;
                stripNextText = endRawStrip;
                trimNextNewline = !endRawStrip;
            }
            else segments.Add(new StatementSegment(tokens));
        }

        return segments;
    }

    private static void AddText(List<Segment> segments, string text)
    {
        if (text.Length > 0) segments.Add(new TextSegment(text));
    }

    private static int FindTagStart(string s, int from)
    {
        for (var i = from; i < s.Length - 1; i++)
            if (s[i] == '{' && s[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    /// <summary>The closing delimiter, skipping string literals that may contain it.</summary>
    private static int FindClose(string s, int from, string close)
    {
        for (var i = from; i < s.Length - 1; i++)
        {
            var c = s[i];
            if (c is '\'' or '"')
            {
                i++;
                while (i < s.Length && s[i] != c)
                {
                    if (s[i] == '\\') i++;
                    i++;
                }
                continue;
            }

            if (s[i] == close[0] && s[i + 1] == close[1]) return i;
        }

        return -1;
    }

    private static int FindEndRaw(string s, int from, out int after, out bool strip)
    {
        var i = from;
        while ((i = s.IndexOf("{%", i, StringComparison.Ordinal)) >= 0)
        {
            var j = i + 2;
            if (j < s.Length && s[j] is '-' or '+') j++;
            while (j < s.Length && char.IsWhiteSpace(s[j])) j++;
            if (string.CompareOrdinal(s, j, "endraw", 0, 6) == 0)
            {
                var close = s.IndexOf("%}", j, StringComparison.Ordinal);
                if (close < 0) break;
                strip = s[close - 1] == '-';
                after = close + 2;
                return i;
            }

            i += 2;
        }

        throw new JinjaException("{% raw %} without {% endraw %}");
    }

    /// <summary>lstrip_blocks: spaces and tabs between the line start and a block tag are removed.</summary>
    private static string LStripBlock(string chunk)
    {
        var k = chunk.Length;
        while (k > 0 && chunk[k - 1] is ' ' or '\t') k--;
        return k == 0 || chunk[k - 1] == '\n' ? chunk[..k] : chunk;
    }

    public static List<Token> TokenizeExpression(string body)
    {
        var tokens = new List<Token>();
        var i = 0;
        while (i < body.Length)
        {
            var c = body[i];
            if (char.IsWhiteSpace(c))
            {
                i++;
                continue;
            }

            if (char.IsLetter(c) || c == '_')
            {
                var start = i;
                while (i < body.Length && (char.IsLetterOrDigit(body[i]) || body[i] == '_')) i++;
                tokens.Add(new Token(TokenKind.Name, body[start..i]));
                continue;
            }

            if (char.IsDigit(c))
            {
                var start = i;
                while (i < body.Length && (char.IsDigit(body[i]) || body[i] == '_')) i++;
                var isFloat = i + 1 < body.Length && body[i] == '.' && char.IsDigit(body[i + 1]);
                if (isFloat)
                {
                    i++;
                    while (i < body.Length && char.IsDigit(body[i])) i++;
                }

                var text = body[start..i].Replace("_", "", StringComparison.Ordinal);
                tokens.Add(isFloat
                    ? new Token(TokenKind.Float, text, double.Parse(text, CultureInfo.InvariantCulture))
                    : new Token(TokenKind.Integer, text, long.Parse(text, CultureInfo.InvariantCulture)));
                continue;
            }

            if (c is '\'' or '"')
            {
                var value = new StringBuilder();
                i++;
                while (true)
                {
                    if (i >= body.Length) throw new JinjaException("unterminated string literal");
                    var d = body[i++];
                    if (d == c) break;
                    if (d != '\\')
                    {
                        value.Append(d);
                        continue;
                    }

                    var e = body[i++];
                    value.Append(e switch
                    {
                        'n' => "\n",
                        't' => "\t",
                        'r' => "\r",
                        '0' => "\0",
                        'u' => ((char)Convert.ToInt32(body.Substring((i += 4) - 4, 4), 16)).ToString(),
                        _ => e.ToString(),
                    });
                }

                tokens.Add(new Token(TokenKind.String, value.ToString(), value.ToString()));
                continue;
            }

            var op = Operators.FirstOrDefault(o => string.CompareOrdinal(body, i, o, 0, o.Length) == 0)
                ?? throw new JinjaException($"unexpected character '{c}' in tag '{body.Trim()}'");
            tokens.Add(new Token(TokenKind.Operator, op));
            i += op.Length;
        }

        return tokens;
    }
}
