using System.Collections;
using System.Globalization;
using System.Text;

namespace FedLlm.Data.Templates.Jinja;

/// <summary>
/// A Jinja2 template restricted to the subset Hugging Face chat templates use (Llama 3, Qwen2/2.5/3), rendered with
/// Python's value semantics, as transformers' <c>apply_chat_template</c> renders it.
/// </summary>
/// <remarks>
/// <para>No Jinja engine for .NET is available from the package source, so this implements what real chat templates
/// need: text, <c>{{ }}</c>, <c>{% if/elif/else %}</c>, <c>{% for %}</c> (with <c>loop.*</c>, tuple targets, a loop filter,
/// <c>else</c>, break/continue), <c>{% set %}</c> (including <c>namespace</c> attributes), <c>{% generation %}</c>,
/// comments, whitespace control, literals, Python operators and slicing, the common filters, tests and string/dict
/// methods, and the globals <c>raise_exception</c>, <c>namespace</c> and <c>range</c>. Macros, includes and call blocks
/// are refused with a <see cref="JinjaException"/>.</para>
/// <para>Values are plain .NET objects: null (None), bool, long, double, string, lists (<see cref="IList"/>) and dictionaries
/// (<see cref="IDictionary{TKey,TValue}"/> with string keys; insertion order is kept, as <c>tojson</c> needs). A missing
/// variable, key or attribute is undefined: it renders as "" and is false, as Jinja's default <c>Undefined</c>.</para>
/// <para>Golden tests compare renderings with the reference JavaScript implementation (@huggingface/jinja) on the real
/// Llama 3 and Qwen3 templates (tests/reference/chat_templates).</para>
/// <para>A parsed template is immutable and can be rendered from several threads.</para>
/// </remarks>
public sealed partial class JinjaTemplate
{
    private readonly IReadOnlyList<Node> _nodes;

    private JinjaTemplate(IReadOnlyList<Node> nodes) => _nodes = nodes;

    /// <summary>Parses a template.</summary>
    /// <exception cref="JinjaException">The template uses syntax outside the supported subset or is malformed.</exception>
    public static JinjaTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new JinjaTemplate(JinjaParser.Parse(source));
    }

    /// <summary>Renders the template with the given variables.</summary>
    /// <exception cref="JinjaException">A runtime error, or the template called <c>raise_exception</c>.</exception>
    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var output = new StringBuilder();
        var scope = new Scope(null);
        foreach (var (name, value) in variables) scope.Set(name, value);
        new Interpreter(output).Run(_nodes, scope);
        return output.ToString();
    }

    /// <summary>Jinja's undefined value: renders as "", is false, and yields undefined for any attribute.</summary>
    internal sealed class Undefined
    {
        public static readonly Undefined Instance = new();

        public override string ToString() => "";
    }

    private sealed class Scope(Scope? parent)
    {
        private readonly Dictionary<string, object?> _values = new(StringComparer.Ordinal);

        public bool TryGet(string name, out object? value)
        {
            for (var s = this; s is not null; s = s.Parent)
                if (s._values.TryGetValue(name, out value)) return true;
            value = null;
            return false;
        }

        public Scope? Parent { get; } = parent;

        public void Set(string name, object? value) => _values[name] = value;
    }

    /// <summary>A <c>namespace()</c> object, whose attributes a <c>{% set ns.x = ... %}</c> can change from inside a loop.</summary>
    private sealed class Namespace : Dictionary<string, object?>
    {
        public Namespace()
            : base(StringComparer.Ordinal)
        {
        }
    }

    private delegate object? Function(List<object?> args, Dictionary<string, object?> kwargs);

    private sealed class LoopControl(bool isBreak) : Exception
    {
        public bool IsBreak { get; } = isBreak;
    }

    private sealed class Interpreter(StringBuilder output)
    {
        public void Run(IReadOnlyList<Node> nodes, Scope scope)
        {
            foreach (var node in nodes) Execute(node, scope);
        }

        private void Execute(Node node, Scope scope)
        {
            switch (node)
            {
                case TextNode text:
                    output.Append(text.Text);
                    break;
                case OutputNode o:
                    output.Append(Str(Eval(o.Value, scope)));
                    break;
                case IfNode branch:
                    foreach (var (condition, body) in branch.Branches)
                    {
                        if (!Truthy(Eval(condition, scope))) continue;
                        Run(body, scope);
                        return;
                    }

                    Run(branch.Else, scope);
                    break;
                case ForNode loop:
                    ExecuteFor(loop, scope);
                    break;
                case SetNode set:
                    var value = set.Value is not null ? Eval(set.Value, scope) : Capture(set.Body!, scope);
                    if (set.Attribute is null) scope.Set(set.Name, value);
                    else if (scope.TryGet(set.Name, out var target) && target is Namespace ns) ns[set.Attribute] = value;
                    else throw new JinjaException($"cannot set attribute '{set.Attribute}' of '{set.Name}': only namespace() objects can be changed");
                    break;
                case LoopControlNode control:
                    throw new LoopControl(control.IsBreak);
                default:
                    throw new JinjaException($"unknown node {node.GetType().Name}");
            }
        }

        private string Capture(IReadOnlyList<Node> body, Scope scope)
        {
            var inner = new StringBuilder();
            new Interpreter(inner).Run(body, scope);
            return inner.ToString();
        }

        private void ExecuteFor(ForNode loop, Scope scope)
        {
            var items = Iterate(Eval(loop.Iterable, scope)).ToList();
            if (loop.Filter is not null)
            {
                items = items.Where(item =>
                {
                    var probe = new Scope(scope);
                    Bind(loop.Targets, item, probe);
                    return Truthy(Eval(loop.Filter, probe));
                }).ToList();
            }

            if (items.Count == 0)
            {
                Run(loop.Else, scope);
                return;
            }

            // Jinja scopes loop variables to the loop; assignments inside do not leak out (namespaces exist for that).
            for (var i = 0; i < items.Count; i++)
            {
                var inner = new Scope(scope);
                Bind(loop.Targets, items[i], inner);
                inner.Set("loop", new Dictionary<string, object?>(StringComparer.Ordinal)
                {
                    ["index"] = (long)(i + 1),
                    ["index0"] = (long)i,
                    ["revindex"] = (long)(items.Count - i),
                    ["revindex0"] = (long)(items.Count - i - 1),
                    ["first"] = i == 0,
                    ["last"] = i == items.Count - 1,
                    ["length"] = (long)items.Count,
                    ["previtem"] = i > 0 ? items[i - 1] : Undefined.Instance,
                    ["nextitem"] = i < items.Count - 1 ? items[i + 1] : Undefined.Instance,
                });
                try
                {
                    Run(loop.Body, inner);
                }
                catch (LoopControl control)
                {
                    if (control.IsBreak) break;
                }
            }
        }

        private static void Bind(IReadOnlyList<string> targets, object? item, Scope scope)
        {
            if (targets.Count == 1)
            {
                scope.Set(targets[0], item);
                return;
            }

            var parts = Iterate(item).ToList();
            if (parts.Count != targets.Count)
                throw new JinjaException($"cannot unpack {parts.Count} values into {targets.Count} loop variables");
            for (var i = 0; i < targets.Count; i++) scope.Set(targets[i], parts[i]);
        }

        private object? Eval(Expr expr, Scope scope)
        {
            switch (expr)
            {
                case LiteralExpr literal:
                    return literal.Value;
                case NameExpr name:
                    if (scope.TryGet(name.Name, out var value)) return value;
                    return Globals.TryGetValue(name.Name, out var function) ? function : Undefined.Instance;
                case AttributeExpr attribute:
                    return GetAttribute(Eval(attribute.Target, scope), attribute.Name);
                case IndexExpr index:
                    return GetItem(Eval(index.Target, scope), Eval(index.Index, scope));
                case SliceExpr slice:
                    return Slice(Eval(slice.Target, scope), Opt(slice.Start), Opt(slice.Stop), Opt(slice.Step));
                case CallExpr call:
                    return Call(call, scope);
                case FilterExpr filter:
                    return Filters.Apply(filter.Name, Eval(filter.Target, scope), filter.Args.Select(a => Eval(a, scope)).ToList(), Kwargs(filter.Kwargs, scope));
                case TestExpr test:
                    var result = Tests.Apply(test.Name, Eval(test.Target, scope), test.Args.Select(a => Eval(a, scope)).ToList());
                    return test.Negated ? !result : result;
                case UnaryExpr unary:
                    var operand = Eval(unary.Operand, scope);
                    return unary.Operator switch
                    {
                        "not" => !Truthy(operand),
                        "-" => operand switch { long l => (object)(-l), double d => -d, _ => throw new JinjaException($"bad operand for unary -: {TypeName(operand)}") },
                        _ => operand,
                    };
                case BinaryExpr binary:
                    return EvalBinary(binary, scope);
                case ConditionalExpr conditional:
                    return Truthy(Eval(conditional.Condition, scope))
                        ? Eval(conditional.Then, scope)
                        : conditional.Else is null ? Undefined.Instance : Eval(conditional.Else, scope);
                case ListExpr list:
                    return list.Items.Select(i => Eval(i, scope)).ToList();
                case DictExpr dict:
                    var map = new OrderedDictionary<string, object?>(StringComparer.Ordinal);
                    foreach (var (k, v) in dict.Items) map[Str(Eval(k, scope))] = Eval(v, scope);
                    return map;
                default:
                    throw new JinjaException($"unknown expression {expr.GetType().Name}");
            }

            long? Opt(Expr? e) => e is null ? null : Eval(e, scope) switch
            {
                null => null,
                long l => l,
                var other => throw new JinjaException($"slice indices must be integers, got {TypeName(other)}"),
            };
        }

        private Dictionary<string, object?> Kwargs(IReadOnlyList<(string Name, Expr Value)> kwargs, Scope scope) =>
            kwargs.ToDictionary(k => k.Name, k => Eval(k.Value, scope), StringComparer.Ordinal);

        private object? Call(CallExpr call, Scope scope)
        {
            var args = call.Args.Select(a => Eval(a, scope)).ToList();
            var kwargs = Kwargs(call.Kwargs, scope);
            if (call.Callee is AttributeExpr method)
            {
                var target = Eval(method.Target, scope);
                if (Methods.TryCall(target, method.Name, args, kwargs, out var result)) return result;
                var member = GetAttribute(target, method.Name);
                if (member is Function f) return f(args, kwargs);
                throw new JinjaException($"'{TypeName(target)}' has no method '{method.Name}'");
            }

            return Eval(call.Callee, scope) switch
            {
                Function function => function(args, kwargs),
                Undefined => throw new JinjaException($"'{(call.Callee as NameExpr)?.Name ?? "value"}' is undefined and cannot be called"),
                var other => throw new JinjaException($"'{TypeName(other)}' is not callable"),
            };
        }

        private object? EvalBinary(BinaryExpr binary, Scope scope)
        {
            var left = Eval(binary.Left, scope);
            // and/or short-circuit and return an operand, as in Python.
            if (binary.Operator == "and") return Truthy(left) ? Eval(binary.Right, scope) : left;
            if (binary.Operator == "or") return Truthy(left) ? left : Eval(binary.Right, scope);
            var right = Eval(binary.Right, scope);
            return binary.Operator switch
            {
                "==" => PyEquals(left, right),
                "!=" => !PyEquals(left, right),
                "<" => Compare(left, right) < 0,
                ">" => Compare(left, right) > 0,
                "<=" => Compare(left, right) <= 0,
                ">=" => Compare(left, right) >= 0,
                "in" => Contains(right, left),
                "not in" => !Contains(right, left),
                "~" => Str(left) + Str(right),
                "+" => Add(left, right),
                _ => Arithmetic(binary.Operator, left, right),
            };
        }

        private static object? Add(object? left, object? right) => (left, right) switch
        {
            (string a, string b) => a + b,
            (IList a, IList b) => a.Cast<object?>().Concat(b.Cast<object?>()).ToList(),
            _ when IsNumber(left) && IsNumber(right) => Arithmetic("+", left, right),
            _ => throw new JinjaException($"unsupported operand types for +: '{TypeName(left)}' and '{TypeName(right)}'"),
        };

        private static object? Arithmetic(string op, object? left, object? right)
        {
            if (left is bool lb) left = lb ? 1L : 0L;
            if (right is bool rb) right = rb ? 1L : 0L;
            if (op == "*" && left is string s && right is long n) return string.Concat(Enumerable.Repeat(s, (int)Math.Max(0, n)));
            if (left is long a && right is long b)
            {
                // object arms: a switch whose arms mix long and double would widen every result to double.
                return op switch
                {
                    "+" => (object)(a + b),
                    "-" => a - b,
                    "*" => a * b,
                    "/" => b == 0 ? throw new JinjaException("division by zero") : (double)a / b,
                    "//" => b == 0 ? throw new JinjaException("division by zero") : (long)Math.Floor((double)a / b),
                    "%" => b == 0 ? throw new JinjaException("modulo by zero") : ((a % b) + b) % b,
                    "**" => (long)Math.Pow(a, b),
                    _ => throw new JinjaException($"unknown operator {op}"),
                };
            }

            if (IsNumber(left) && IsNumber(right))
            {
                var x = Convert.ToDouble(left, CultureInfo.InvariantCulture);
                var y = Convert.ToDouble(right, CultureInfo.InvariantCulture);
                return op switch
                {
                    "+" => x + y,
                    "-" => x - y,
                    "*" => x * y,
                    "/" => x / y,
                    "//" => Math.Floor(x / y),
                    "%" => x - y * Math.Floor(x / y),
                    "**" => Math.Pow(x, y),
                    _ => throw new JinjaException($"unknown operator {op}"),
                };
            }

            throw new JinjaException($"unsupported operand types for {op}: '{TypeName(left)}' and '{TypeName(right)}'");
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Python value semantics.

    internal static bool IsNumber(object? v) => v is long or double or int;

    internal static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        Undefined => "Undefined",
        bool => "bool",
        long or int => "int",
        double => "float",
        string => "str",
        IDictionary => "dict",
        IList => "list",
        _ => v.GetType().Name,
    };

    internal static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        int i => i != 0,
        double d => d != 0,
        string s => s.Length > 0,
        ICollection c => c.Count > 0,
        _ => true,
    };

    /// <summary>Python's str(): None, True/False, repr-style lists and dicts.</summary>
    internal static string Str(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        string s => s,
        bool b => b ? "True" : "False",
        long or int => Convert.ToString(v, CultureInfo.InvariantCulture)!,
        double d => PyFloat(d),
        _ => Repr(v),
    };

    private static string PyFloat(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        var text = d.ToString("R", CultureInfo.InvariantCulture);
        return text.Contains('.') || text.Contains('E') ? text : text + ".0";
    }

    internal static string Repr(object? v) => v switch
    {
        string s => "'" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal) + "'",
        IDictionary d => "{" + string.Join(", ", d.Keys.Cast<object>().Select(k => Repr(k) + ": " + Repr(d[k]))) + "}",
        IList l => "[" + string.Join(", ", l.Cast<object?>().Select(Repr)) + "]",
        _ => Str(v),
    };

    internal static bool PyEquals(object? a, object? b)
    {
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (a is null || b is null) return a is null && b is null;
        if (a is bool x && b is bool y) return x == y;
        if (IsNumber(a) && IsNumber(b)) return Convert.ToDouble(a, CultureInfo.InvariantCulture) == Convert.ToDouble(b, CultureInfo.InvariantCulture);
        if (a is string s && b is string t) return string.Equals(s, t, StringComparison.Ordinal);
        if (a is IList la && b is IList lb)
            return la.Count == lb.Count && Enumerable.Range(0, la.Count).All(i => PyEquals(la[i], lb[i]));
        return Equals(a, b);
    }

    internal static int Compare(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b)) return Convert.ToDouble(a, CultureInfo.InvariantCulture).CompareTo(Convert.ToDouble(b, CultureInfo.InvariantCulture));
        if (a is string s && b is string t) return string.CompareOrdinal(s, t);
        throw new JinjaException($"'<' not supported between '{TypeName(a)}' and '{TypeName(b)}'");
    }

    internal static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal) : throw new JinjaException("'in <string>' requires a string"),
        IDictionary d => item is not null && d.Contains(item is string ? item : Str(item)),
        IEnumerable e => e.Cast<object?>().Any(x => PyEquals(x, item)),
        Undefined or null => throw new JinjaException($"argument of type '{TypeName(container)}' is not iterable"),
        _ => throw new JinjaException($"argument of type '{TypeName(container)}' is not iterable"),
    };

    /// <summary>Iterating a dict gives its keys, a string its characters, as in Python.</summary>
    internal static IEnumerable<object?> Iterate(object? v) => v switch
    {
        null or Undefined => [],
        string s => s.Select(c => (object?)c.ToString()),
        IDictionary d => d.Keys.Cast<object?>().ToList(),
        IEnumerable e => e.Cast<object?>(),
        _ => throw new JinjaException($"'{TypeName(v)}' object is not iterable"),
    };

    internal static object? GetAttribute(object? target, string name) => target switch
    {
        IDictionary d => d.Contains(name) ? d[name] : Undefined.Instance,
        IReadOnlyDictionary<string, object?> d => d.TryGetValue(name, out var value) ? value : Undefined.Instance,
        _ => Undefined.Instance,
    };

    internal static object? GetItem(object? target, object? index)
    {
        switch (target)
        {
            case IDictionary d:
                var key = index is string ? index : Str(index);
                return d.Contains(key) ? d[key] : Undefined.Instance;
            case IList list when index is long i:
                var k = i < 0 ? list.Count + i : i;
                return k >= 0 && k < list.Count ? list[(int)k] : Undefined.Instance;
            case string s when index is long i:
                var j = i < 0 ? s.Length + i : i;
                return j >= 0 && j < s.Length ? s[(int)j].ToString() : Undefined.Instance;
            case null or Undefined:
                return Undefined.Instance;
            default:
                return index is string name ? GetAttribute(target, name) : Undefined.Instance;
        }
    }

    internal static object? Slice(object? target, long? start, long? stop, long? step)
    {
        var items = target switch
        {
            string s => s.Select(c => (object?)c.ToString()).ToList(),
            IList l => l.Cast<object?>().ToList(),
            _ => throw new JinjaException($"'{TypeName(target)}' cannot be sliced"),
        };
        var n = items.Count;
        var st = step ?? 1;
        if (st == 0) throw new JinjaException("slice step cannot be zero");
        // Python's slice.indices: clamp to the sequence, defaults depend on the direction.
        long Clamp(long? v, long dflt, long lo, long hi)
        {
            if (v is null) return dflt;
            var x = v.Value < 0 ? v.Value + n : v.Value;
            return Math.Clamp(x, lo, hi);
        }

        var result = new List<object?>();
        if (st > 0)
        {
            var a = Clamp(start, 0, 0, n);
            var b = Clamp(stop, n, 0, n);
            for (var i = a; i < b; i += st) result.Add(items[(int)i]);
        }
        else
        {
            var a = Clamp(start, n - 1, -1, n - 1);
            var b = Clamp(stop, -1, -1, n - 1);
            for (var i = a; i > b; i += st) result.Add(items[(int)i]);
        }

        return target is string ? string.Concat(result.Cast<string>()) : result;
    }

    private static readonly Dictionary<string, Function> Globals = new(StringComparer.Ordinal)
    {
        ["raise_exception"] = (args, _) => throw new JinjaException(args.Count > 0 ? Str(args[0]) : "raise_exception called"),
        ["namespace"] = (args, kwargs) =>
        {
            var ns = new Namespace();
            foreach (var arg in args)
                if (arg is IDictionary d) foreach (var k in d.Keys) ns[Str(k)] = d[k];
            foreach (var (k, v) in kwargs) ns[k] = v;
            return ns;
        },
        ["range"] = (args, _) =>
        {
            var numbers = args.Select(a => a is long l ? l : throw new JinjaException("range() takes integers")).ToArray();
            var (from, to, by) = numbers.Length switch
            {
                1 => (0L, numbers[0], 1L),
                2 => (numbers[0], numbers[1], 1L),
                3 => (numbers[0], numbers[1], numbers[2]),
                _ => throw new JinjaException("range() takes 1 to 3 arguments"),
            };
            if (by == 0) throw new JinjaException("range() step cannot be zero");
            var list = new List<object?>();
            for (var i = from; by > 0 ? i < to : i > to; i += by) list.Add(i);
            return list;
        },
        ["dict"] = (_, kwargs) => new OrderedDictionary<string, object?>(kwargs, StringComparer.Ordinal),
    };
}
