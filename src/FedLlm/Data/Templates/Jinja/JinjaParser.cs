namespace FedLlm.Data.Templates.Jinja;

// Statements.
internal abstract record Node;

internal sealed record TextNode(string Text) : Node;

internal sealed record OutputNode(Expr Value) : Node;

internal sealed record IfNode(IReadOnlyList<(Expr Condition, IReadOnlyList<Node> Body)> Branches, IReadOnlyList<Node> Else) : Node;

internal sealed record ForNode(IReadOnlyList<string> Targets, Expr Iterable, Expr? Filter, IReadOnlyList<Node> Body, IReadOnlyList<Node> Else) : Node;

internal sealed record SetNode(string Name, string? Attribute, Expr? Value, IReadOnlyList<Node>? Body) : Node;

internal sealed record LoopControlNode(bool IsBreak) : Node;

// Expressions.
internal abstract record Expr;

internal sealed record LiteralExpr(object? Value) : Expr;

internal sealed record NameExpr(string Name) : Expr;

internal sealed record AttributeExpr(Expr Target, string Name) : Expr;

internal sealed record IndexExpr(Expr Target, Expr Index) : Expr;

internal sealed record SliceExpr(Expr Target, Expr? Start, Expr? Stop, Expr? Step) : Expr;

internal sealed record CallExpr(Expr Callee, IReadOnlyList<Expr> Args, IReadOnlyList<(string Name, Expr Value)> Kwargs) : Expr;

internal sealed record FilterExpr(Expr Target, string Name, IReadOnlyList<Expr> Args, IReadOnlyList<(string Name, Expr Value)> Kwargs) : Expr;

internal sealed record TestExpr(Expr Target, string Name, IReadOnlyList<Expr> Args, bool Negated) : Expr;

internal sealed record UnaryExpr(string Operator, Expr Operand) : Expr;

internal sealed record BinaryExpr(string Operator, Expr Left, Expr Right) : Expr;

internal sealed record ConditionalExpr(Expr Condition, Expr Then, Expr? Else) : Expr;

internal sealed record ListExpr(IReadOnlyList<Expr> Items) : Expr;

internal sealed record DictExpr(IReadOnlyList<(Expr Key, Expr Value)> Items) : Expr;

/// <summary>
/// Parses segments into a tree, with Jinja2's operator precedence (jinja2/parser.py): conditional, or, and, not,
/// comparisons (==, !=, &lt;, &gt;, &lt;=, &gt;=, in, not in), + -, ~, * / // %, **, unary - +, then primaries with their
/// postfixes (.attr, [index], [a:b:c], (call)) and filters/tests (<c>| name</c>, <c>is [not] name</c>), which bind
/// tightest, so <c>'a' + x | trim</c> is <c>'a' + (x | trim)</c>.
/// </summary>
internal sealed class JinjaParser
{
    private readonly List<Segment> _segments;
    private int _position;

    private JinjaParser(List<Segment> segments) => _segments = segments;

    public static IReadOnlyList<Node> Parse(string source)
    {
        var parser = new JinjaParser(JinjaLexer.Tokenize(source));
        var body = parser.ParseBody(out var end);
        if (end is not null) throw new JinjaException($"unexpected {{% {end} %}}");
        return body;
    }

    /// <summary>Parses nodes until a statement whose keyword ends the current block; returns that keyword (null at the end).</summary>
    private List<Node> ParseBody(out string? endKeyword, params string[] enders)
    {
        var nodes = new List<Node>();
        while (_position < _segments.Count)
        {
            var segment = _segments[_position++];
            switch (segment)
            {
                case TextSegment text:
                    nodes.Add(new TextNode(text.Text));
                    break;
                case OutputSegment output:
                    nodes.Add(new OutputNode(ParseWhole(output.Tokens)));
                    break;
                case StatementSegment statement:
                    var keyword = statement.Tokens.Count > 0 ? statement.Tokens[0].Text : "";
                    if (enders.Contains(keyword))
                    {
                        _position--;
                        endKeyword = keyword;
                        return nodes;
                    }

                    nodes.Add(ParseStatement(statement.Tokens));
                    break;
            }
        }

        endKeyword = null;
        return nodes;
    }

    private StatementSegment Expect(string keyword)
    {
        if (_position >= _segments.Count || _segments[_position] is not StatementSegment s || s.Tokens.Count == 0 || s.Tokens[0].Text != keyword)
            throw new JinjaException($"expected {{% {keyword} %}}");
        _position++;
        return s;
    }

    private Node ParseStatement(IReadOnlyList<Token> tokens)
    {
        var stream = new TokenStream(tokens);
        var keyword = stream.Next();
        switch (keyword.Text)
        {
            case "if":
            {
                var branches = new List<(Expr, IReadOnlyList<Node>)>();
                var condition = ParseExpression(stream);
                stream.ExpectEnd();
                while (true)
                {
                    var body = ParseBody(out var end, "elif", "else", "endif");
                    branches.Add((condition, body));
                    if (end == "elif")
                    {
                        var elif = new TokenStream(Expect("elif").Tokens);
                        elif.Next();
                        condition = ParseExpression(elif);
                        elif.ExpectEnd();
                        continue;
                    }

                    IReadOnlyList<Node> elseBody = [];
                    if (end == "else")
                    {
                        Expect("else");
                        elseBody = ParseBody(out end, "endif");
                    }

                    if (end != "endif") throw new JinjaException("{% if %} without {% endif %}");
                    Expect("endif");
                    return new IfNode(branches, elseBody);
                }
            }
            case "for":
            {
                var targets = new List<string> { stream.ExpectName() };
                while (stream.TryOperator(",")) targets.Add(stream.ExpectName());
                if (!stream.Next().IsName("in")) throw new JinjaException("expected 'in' in {% for %}");
                // The iterable stops before a trailing "if" (loop filter), so parse without the conditional expression.
                var iterable = ParseOr(stream);
                Expr? filter = null;
                if (stream.TryName("if")) filter = ParseOr(stream);
                stream.TryName("recursive");
                stream.ExpectEnd();
                var body = ParseBody(out var end, "else", "endfor");
                IReadOnlyList<Node> elseBody = [];
                if (end == "else")
                {
                    Expect("else");
                    elseBody = ParseBody(out end, "endfor");
                }

                if (end != "endfor") throw new JinjaException("{% for %} without {% endfor %}");
                Expect("endfor");
                return new ForNode(targets, iterable, filter, body, elseBody);
            }
            case "set":
            {
                var name = stream.ExpectName();
                string? attribute = null;
                if (stream.TryOperator(".")) attribute = stream.ExpectName();
                if (stream.AtEnd)
                {
                    var body = ParseBody(out var end, "endset");
                    if (end != "endset") throw new JinjaException("{% set %} block without {% endset %}");
                    Expect("endset");
                    return new SetNode(name, attribute, null, body);
                }

                stream.ExpectOperator("=");
                var value = ParseTupleOrExpression(stream);
                stream.ExpectEnd();
                return new SetNode(name, attribute, value, null);
            }
            case "generation":
            {
                // transformers' {% generation %} marks assistant text for assistant-token masks; it renders its body as is.
                var body = ParseBody(out var end, "endgeneration");
                if (end != "endgeneration") throw new JinjaException("{% generation %} without {% endgeneration %}");
                Expect("endgeneration");
                return new IfNode([(new LiteralExpr(true), body)], []);
            }
            case "break" or "continue":
                stream.ExpectEnd();
                return new LoopControlNode(keyword.Text == "break");
            default:
                throw new JinjaException($"unsupported tag {{% {keyword.Text} %}} (this renderer covers the subset used by Llama 3 and Qwen chat templates)");
        }
    }

    private static Expr ParseWhole(IReadOnlyList<Token> tokens)
    {
        var stream = new TokenStream(tokens);
        var expr = ParseTupleOrExpression(stream);
        stream.ExpectEnd();
        return expr;
    }

    private static Expr ParseTupleOrExpression(TokenStream s)
    {
        var first = ParseExpression(s);
        if (!s.PeekOperator(",")) return first;
        var items = new List<Expr> { first };
        while (s.TryOperator(",") && !s.AtEnd) items.Add(ParseExpression(s));
        return new ListExpr(items);
    }

    private static Expr ParseExpression(TokenStream s)
    {
        var value = ParseOr(s);
        if (!s.TryName("if")) return value;
        var condition = ParseOr(s);
        var otherwise = s.TryName("else") ? ParseExpression(s) : null;
        return new ConditionalExpr(condition, value, otherwise);
    }

    private static Expr ParseOr(TokenStream s)
    {
        var left = ParseAnd(s);
        while (s.TryName("or")) left = new BinaryExpr("or", left, ParseAnd(s));
        return left;
    }

    private static Expr ParseAnd(TokenStream s)
    {
        var left = ParseNot(s);
        while (s.TryName("and")) left = new BinaryExpr("and", left, ParseNot(s));
        return left;
    }

    private static Expr ParseNot(TokenStream s) => s.TryName("not") ? new UnaryExpr("not", ParseNot(s)) : ParseCompare(s);

    private static Expr ParseCompare(TokenStream s)
    {
        var left = ParseAdd(s);
        while (true)
        {
            if (s.Peek() is { Kind: TokenKind.Operator, Text: "==" or "!=" or "<" or ">" or "<=" or ">=" } op)
            {
                s.Next();
                left = new BinaryExpr(op.Text, left, ParseAdd(s));
            }
            else if (s.TryName("in")) left = new BinaryExpr("in", left, ParseAdd(s));
            else if (s.PeekName("not") && s.PeekName("in", 1))
            {
                s.Next();
                s.Next();
                left = new BinaryExpr("not in", left, ParseAdd(s));
            }
            else return left;
        }
    }

    private static Expr ParseAdd(TokenStream s)
    {
        var left = ParseConcat(s);
        while (s.Peek() is { Kind: TokenKind.Operator, Text: "+" or "-" } op)
        {
            s.Next();
            left = new BinaryExpr(op.Text, left, ParseConcat(s));
        }

        return left;
    }

    private static Expr ParseConcat(TokenStream s)
    {
        var left = ParseMultiply(s);
        while (s.TryOperator("~")) left = new BinaryExpr("~", left, ParseMultiply(s));
        return left;
    }

    private static Expr ParseMultiply(TokenStream s)
    {
        var left = ParsePower(s);
        while (s.Peek() is { Kind: TokenKind.Operator, Text: "*" or "/" or "//" or "%" } op)
        {
            s.Next();
            left = new BinaryExpr(op.Text, left, ParsePower(s));
        }

        return left;
    }

    private static Expr ParsePower(TokenStream s)
    {
        var left = ParseUnary(s);
        while (s.TryOperator("**")) left = new BinaryExpr("**", left, ParseUnary(s));
        return left;
    }

    private static Expr ParseUnary(TokenStream s)
    {
        if (s.TryOperator("-")) return ParseFilters(s, new UnaryExpr("-", ParseUnaryNoFilter(s)));
        if (s.TryOperator("+")) return ParseFilters(s, new UnaryExpr("+", ParseUnaryNoFilter(s)));
        return ParseFilters(s, ParsePostfix(s, ParsePrimary(s)));
    }

    private static Expr ParseUnaryNoFilter(TokenStream s)
    {
        if (s.TryOperator("-")) return new UnaryExpr("-", ParseUnaryNoFilter(s));
        if (s.TryOperator("+")) return new UnaryExpr("+", ParseUnaryNoFilter(s));
        return ParsePostfix(s, ParsePrimary(s));
    }

    private static Expr ParsePrimary(TokenStream s)
    {
        var token = s.Next();
        switch (token.Kind)
        {
            case TokenKind.String:
                // Adjacent string literals concatenate, as in Python.
                var text = (string)token.Value!;
                while (s.Peek() is { Kind: TokenKind.String } next)
                {
                    s.Next();
                    text += (string)next.Value!;
                }
                return new LiteralExpr(text);
            case TokenKind.Integer or TokenKind.Float:
                return new LiteralExpr(token.Value);
            case TokenKind.Name:
                return token.Text switch
                {
                    "true" or "True" => new LiteralExpr(true),
                    "false" or "False" => new LiteralExpr(false),
                    "none" or "None" => new LiteralExpr(null),
                    _ => new NameExpr(token.Text),
                };
        }

        if (token.Is("("))
        {
            if (s.TryOperator(")")) return new ListExpr([]);
            var inner = ParseExpression(s);
            if (s.PeekOperator(","))
            {
                var items = new List<Expr> { inner };
                while (s.TryOperator(",") && !s.PeekOperator(")")) items.Add(ParseExpression(s));
                inner = new ListExpr(items);
            }

            s.ExpectOperator(")");
            return inner;
        }

        if (token.Is("["))
        {
            var items = new List<Expr>();
            while (!s.TryOperator("]"))
            {
                items.Add(ParseExpression(s));
                if (!s.TryOperator(",")) { s.ExpectOperator("]"); break; }
            }

            return new ListExpr(items);
        }

        if (token.Is("{"))
        {
            var items = new List<(Expr, Expr)>();
            while (!s.TryOperator("}"))
            {
                var key = ParseExpression(s);
                s.ExpectOperator(":");
                items.Add((key, ParseExpression(s)));
                if (!s.TryOperator(",")) { s.ExpectOperator("}"); break; }
            }

            return new DictExpr(items);
        }

        throw new JinjaException($"unexpected '{token.Text}'");
    }

    private static Expr ParsePostfix(TokenStream s, Expr expr)
    {
        while (true)
        {
            if (s.TryOperator("."))
            {
                var name = s.Next();
                expr = name.Kind == TokenKind.Integer ? new IndexExpr(expr, new LiteralExpr(name.Value)) : new AttributeExpr(expr, name.Text);
            }
            else if (s.TryOperator("[")) expr = ParseSubscript(s, expr);
            else if (s.PeekOperator("(")) expr = ParseCall(s, expr);
            else return expr;
        }
    }

    private static Expr ParseSubscript(TokenStream s, Expr target)
    {
        Expr? start = null, stop = null, step = null;
        if (!s.PeekOperator(":")) start = ParseExpression(s);
        if (!s.TryOperator(":"))
        {
            s.ExpectOperator("]");
            return new IndexExpr(target, start!);
        }

        if (!s.PeekOperator(":") && !s.PeekOperator("]")) stop = ParseExpression(s);
        if (s.TryOperator(":") && !s.PeekOperator("]")) step = ParseExpression(s);
        s.ExpectOperator("]");
        return new SliceExpr(target, start, stop, step);
    }

    private static CallExpr ParseCall(TokenStream s, Expr callee)
    {
        var (args, kwargs) = ParseArguments(s);
        return new CallExpr(callee, args, kwargs);
    }

    private static (List<Expr>, List<(string, Expr)>) ParseArguments(TokenStream s)
    {
        s.ExpectOperator("(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!s.TryOperator(")"))
        {
            if (s.Peek() is { Kind: TokenKind.Name } name && s.PeekOperator("=", 1))
            {
                s.Next();
                s.Next();
                kwargs.Add((name.Text, ParseExpression(s)));
            }
            else args.Add(ParseExpression(s));

            if (!s.TryOperator(",")) { s.ExpectOperator(")"); break; }
        }

        return (args, kwargs);
    }

    private static Expr ParseFilters(TokenStream s, Expr expr)
    {
        while (true)
        {
            if (s.TryOperator("|"))
            {
                var name = s.ExpectName();
                var (args, kwargs) = s.PeekOperator("(") ? ParseArguments(s) : ([], []);
                expr = new FilterExpr(expr, name, args, kwargs);
            }
            else if (s.TryName("is"))
            {
                var negated = s.TryName("not");
                var name = s.Next();
                var testName = name.Kind == TokenKind.Operator ? name.Text : name.Text;
                List<Expr> args = [];
                if (s.PeekOperator("(")) args = ParseArguments(s).Item1;
                else if (s.Peek() is { Kind: TokenKind.String or TokenKind.Integer or TokenKind.Float }) args = [ParsePrimary(s)];
                expr = new TestExpr(expr, testName, args, negated);
            }
            else return expr;
        }
    }

    private sealed class TokenStream(IReadOnlyList<Token> tokens)
    {
        private int _i;

        public bool AtEnd => _i >= tokens.Count;

        public Token? Peek(int ahead = 0) => _i + ahead < tokens.Count ? tokens[_i + ahead] : null;

        public Token Next() => _i < tokens.Count ? tokens[_i++] : throw new JinjaException("unexpected end of tag");

        public bool PeekOperator(string op, int ahead = 0) => Peek(ahead) is { } t && t.Is(op);

        public bool PeekName(string name, int ahead = 0) => Peek(ahead) is { } t && t.IsName(name);

        public bool TryOperator(string op)
        {
            if (!PeekOperator(op)) return false;
            _i++;
            return true;
        }

        public bool TryName(string name)
        {
            if (!PeekName(name)) return false;
            _i++;
            return true;
        }

        public void ExpectOperator(string op)
        {
            if (!TryOperator(op)) throw new JinjaException($"expected '{op}', found '{Peek()?.Text ?? "end of tag"}'");
        }

        public string ExpectName()
        {
            var t = Next();
            return t.Kind == TokenKind.Name ? t.Text : throw new JinjaException($"expected a name, found '{t.Text}'");
        }

        public void ExpectEnd()
        {
            if (!AtEnd) throw new JinjaException($"unexpected '{Peek()!.Value.Text}'");
        }
    }
}
