using System.Collections;
using System.Globalization;
using System.Text;

namespace FedLlm.Data.Templates.Jinja;

/// <summary>Filters, tests and methods: the Jinja and Python built-ins that chat templates call.</summary>
public sealed partial class JinjaTemplate
{
    private static class Filters
    {
        public static object? Apply(string name, object? value, List<object?> args, Dictionary<string, object?> kwargs)
        {
            object? Arg(int i, string key, object? dflt = null) => i < args.Count ? args[i] : kwargs.TryGetValue(key, out var v) ? v : dflt;
            switch (name)
            {
                case "trim":
                    return Methods.Strip(Str(value), Arg(0, "chars") as string, left: true, right: true);
                case "length" or "count":
                    return value switch
                    {
                        string s => (long)s.Length,
                        ICollection c => (long)c.Count,
                        Undefined or null => 0L,
                        IEnumerable e => (long)e.Cast<object?>().Count(),
                        _ => throw new JinjaException($"object of type '{TypeName(value)}' has no len()"),
                    };
                case "tojson":
                    return ToJson(value, Arg(0, "indent") is long indent ? (int)indent : null);
                case "join":
                    var separator = Str(Arg(0, "d", ""));
                    var attribute = Arg(1, "attribute") as string;
                    return string.Join(separator, Iterate(value).Select(v => Str(attribute is null ? v : GetAttribute(v, attribute))));
                case "items":
                    return value is IDictionary d
                        ? d.Keys.Cast<object?>().Select(k => (object?)new List<object?> { k, d[k!] }).ToList()
                        : value is null or Undefined ? new List<object?>() : throw new JinjaException("items() needs a mapping");
                case "upper":
                    return Str(value).ToUpperInvariant();
                case "lower":
                    return Str(value).ToLowerInvariant();
                case "capitalize":
                    return Methods.Capitalize(Str(value));
                case "title":
                    return CultureInfo.InvariantCulture.TextInfo.ToTitleCase(Str(value).ToLowerInvariant());
                case "string":
                    return Str(value);
                case "int":
                    return value switch
                    {
                        long l => l,
                        double x => (long)x,
                        bool b => b ? 1L : 0L,
                        string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var l) => l,
                        _ => Arg(0, "default", 0L),
                    };
                case "float":
                    return value switch
                    {
                        long l => (double)l,
                        double x => x,
                        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var x) => x,
                        _ => Arg(0, "default", 0.0),
                    };
                case "default" or "d":
                    var boolean = Truthy(Arg(1, "boolean", false));
                    return value is Undefined || (boolean && !Truthy(value)) ? Arg(0, "default_value", "") : value;
                case "first":
                    return Iterate(value).FirstOrDefault(Undefined.Instance);
                case "last":
                    return value is IList list ? (list.Count > 0 ? list[^1] : Undefined.Instance) : Iterate(value).LastOrDefault(Undefined.Instance);
                case "reverse":
                    return value is string str ? new string(str.Reverse().ToArray()) : Iterate(value).Reverse().ToList();
                case "list":
                    return Iterate(value).ToList();
                case "unique":
                    var unique = new List<object?>();
                    foreach (var item in Iterate(value))
                        if (!unique.Any(u => PyEquals(u, item))) unique.Add(item);
                    return unique;
                case "replace":
                    return Str(value).Replace(Str(Arg(0, "old")), Str(Arg(1, "new")), StringComparison.Ordinal);
                case "safe":
                    return value;
                case "abs":
                    return value switch { long l => (object)Math.Abs(l), double x => Math.Abs(x), _ => throw new JinjaException("abs() needs a number") };
                case "indent":
                    return Indent(Str(value), Arg(0, "width", 4L), Truthy(Arg(1, "first", false)), Truthy(Arg(2, "blank", false)));
                case "select" or "reject":
                    return Iterate(value).Where(v => Tests.Apply(args.Count > 0 ? Str(args[0]) : "truthy", v, args.Skip(1).ToList()) == (name == "select")).ToList();
                case "selectattr" or "rejectattr":
                    var attr = Str(Arg(0, "attribute"));
                    return Iterate(value)
                        .Where(v => Tests.Apply(args.Count > 1 ? Str(args[1]) : "truthy", GetAttribute(v, attr), args.Skip(2).ToList()) == (name == "selectattr"))
                        .ToList();
                case "map":
                    if (kwargs.TryGetValue("attribute", out var mapAttribute))
                        return Iterate(value).Select(v => GetAttribute(v, Str(mapAttribute))).ToList();
                    if (args.Count > 0)
                        return Iterate(value).Select(v => Apply(Str(args[0]), v, args.Skip(1).ToList(), [])).ToList();
                    throw new JinjaException("map() needs a filter name or attribute=");
                default:
                    throw new JinjaException($"unsupported filter '{name}'");
            }
        }

        private static string Indent(string text, object? width, bool first, bool blank)
        {
            var pad = width is long w ? new string(' ', (int)w) : Str(width);
            var lines = text.Split('\n');
            for (var i = 0; i < lines.Length; i++)
            {
                if (i == 0 && !first) continue;
                if (lines[i].Length == 0 && !blank) continue;
                lines[i] = pad + lines[i];
            }

            return string.Join('\n', lines);
        }
    }

    private static class Tests
    {
        public static bool Apply(string name, object? value, List<object?> args) => name switch
        {
            "defined" => value is not Undefined,
            "undefined" => value is Undefined,
            "none" => value is null,
            "string" => value is string,
            "number" => IsNumber(value),
            "integer" => value is long or int,
            "float" => value is double,
            "boolean" => value is bool,
            "true" => value is true,
            "false" => value is false,
            "mapping" => value is IDictionary,
            "sequence" => value is string or IList,
            "iterable" => value is string or IEnumerable,
            "callable" => value is Function,
            "odd" => value is long o && o % 2 != 0,
            "even" => value is long e && e % 2 == 0,
            "divisibleby" => value is long n && args.Count > 0 && args[0] is long m && m != 0 && n % m == 0,
            "lower" => value is string l && l == l.ToLowerInvariant(),
            "upper" => value is string u && u == u.ToUpperInvariant(),
            "equalto" or "eq" or "==" or "sameas" => args.Count > 0 && PyEquals(value, args[0]),
            "ne" or "!=" => args.Count > 0 && !PyEquals(value, args[0]),
            "in" => args.Count > 0 && Contains(args[0], value),
            "truthy" => Truthy(value),
            _ => throw new JinjaException($"unsupported test '{name}'"),
        };
    }

    private static class Methods
    {
        public static bool TryCall(object? target, string name, List<object?> args, Dictionary<string, object?> kwargs, out object? result)
        {
            object? Arg(int i, string key, object? dflt = null) => i < args.Count ? args[i] : kwargs.TryGetValue(key, out var v) ? v : dflt;
            result = null;
            switch (target)
            {
                case string s:
                    switch (name)
                    {
                        case "strip": result = Strip(s, Arg(0, "chars") as string, true, true); return true;
                        case "lstrip": result = Strip(s, Arg(0, "chars") as string, true, false); return true;
                        case "rstrip": result = Strip(s, Arg(0, "chars") as string, false, true); return true;
                        case "startswith": result = AnyOf(Arg(0, "prefix"), p => s.StartsWith(p, StringComparison.Ordinal)); return true;
                        case "endswith": result = AnyOf(Arg(0, "suffix"), p => s.EndsWith(p, StringComparison.Ordinal)); return true;
                        case "split": result = Split(s, Arg(0, "sep") as string, Arg(1, "maxsplit") is long m ? m : -1); return true;
                        case "upper": result = s.ToUpperInvariant(); return true;
                        case "lower": result = s.ToLowerInvariant(); return true;
                        case "title": result = CultureInfo.InvariantCulture.TextInfo.ToTitleCase(s.ToLowerInvariant()); return true;
                        case "capitalize": result = Capitalize(s); return true;
                        case "replace":
                            var count = Arg(2, "count") is long c ? c : -1;
                            result = Replace(s, Str(Arg(0, "old")), Str(Arg(1, "new")), count);
                            return true;
                        case "find": result = (long)s.IndexOf(Str(Arg(0, "sub")), StringComparison.Ordinal); return true;
                        case "count": result = (long)CountOf(s, Str(Arg(0, "sub"))); return true;
                        case "join": result = string.Join(s, Iterate(Arg(0, "iterable")).Select(Str)); return true;
                        case "isspace": result = s.Length > 0 && s.All(char.IsWhiteSpace); return true;
                        case "isdigit": result = s.Length > 0 && s.All(char.IsDigit); return true;
                    }
                    return false;
                case IDictionary d and not Namespace:
                    switch (name)
                    {
                        case "get":
                            var key = Arg(0, "key");
                            result = key is not null && d.Contains(key is string ? key : Str(key)) ? d[key is string ? key : Str(key)] : Arg(1, "default");
                            return true;
                        case "items": result = d.Keys.Cast<object?>().Select(k => (object?)new List<object?> { k, d[k!] }).ToList(); return true;
                        case "keys": result = d.Keys.Cast<object?>().ToList(); return true;
                        case "values": result = d.Values.Cast<object?>().ToList(); return true;
                    }
                    return false;
                default:
                    return false;
            }
        }

        private static bool AnyOf(object? arg, Func<string, bool> predicate) =>
            arg is string one ? predicate(one) : Iterate(arg).Any(p => predicate(Str(p)));

        /// <summary>Python's str.strip family: whitespace by default, else any of the given characters.</summary>
        public static string Strip(string s, string? chars, bool left, bool right)
        {
            Func<char, bool> strip = chars is null ? char.IsWhiteSpace : chars.Contains;
            int a = 0, b = s.Length;
            if (left) while (a < b && strip(s[a])) a++;
            if (right) while (b > a && strip(s[b - 1])) b--;
            return s[a..b];
        }

        public static string Capitalize(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

        /// <summary>Python's str.split: on runs of whitespace without a separator, else on each separator.</summary>
        private static List<object?> Split(string s, string? separator, long maxSplit)
        {
            var parts = new List<object?>();
            if (separator is null)
            {
                var i = 0;
                while (true)
                {
                    while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
                    if (i >= s.Length) break;
                    if (maxSplit >= 0 && parts.Count == maxSplit)
                    {
                        parts.Add(s[i..].TrimEnd());
                        break;
                    }

                    var start = i;
                    while (i < s.Length && !char.IsWhiteSpace(s[i])) i++;
                    parts.Add(s[start..i]);
                }

                return parts;
            }

            if (separator.Length == 0) throw new JinjaException("empty separator");
            var from = 0;
            while (maxSplit < 0 || parts.Count < maxSplit)
            {
                var at = s.IndexOf(separator, from, StringComparison.Ordinal);
                if (at < 0) break;
                parts.Add(s[from..at]);
                from = at + separator.Length;
            }

            parts.Add(s[from..]);
            return parts;
        }

        private static string Replace(string s, string old, string replacement, long count)
        {
            if (count < 0) return old.Length == 0 ? s : s.Replace(old, replacement, StringComparison.Ordinal);
            var text = new StringBuilder();
            var from = 0;
            for (var n = 0; n < count; n++)
            {
                var at = s.IndexOf(old, from, StringComparison.Ordinal);
                if (at < 0 || old.Length == 0) break;
                text.Append(s, from, at - from).Append(replacement);
                from = at + old.Length;
            }

            return text.Append(s, from, s.Length - from).ToString();
        }

        private static int CountOf(string s, string sub)
        {
            if (sub.Length == 0) return s.Length + 1;
            var n = 0;
            for (var at = s.IndexOf(sub, StringComparison.Ordinal); at >= 0; at = s.IndexOf(sub, at + sub.Length, StringComparison.Ordinal)) n++;
            return n;
        }
    }

    /// <summary>
    /// transformers' <c>tojson</c>: Python's <c>json.dumps(x, ensure_ascii=False, indent=indent)</c>, so separators are
    /// ", " and ": " without indent, "," and ": " with it, and keys keep their order.
    /// </summary>
    internal static string ToJson(object? value, int? indent)
    {
        var text = new StringBuilder();
        Write(value, 0);
        return text.ToString();

        void Write(object? v, int depth)
        {
            switch (v)
            {
                case null or Undefined:
                    text.Append("null");
                    break;
                case bool b:
                    text.Append(b ? "true" : "false");
                    break;
                case long or int:
                    text.Append(Convert.ToString(v, CultureInfo.InvariantCulture));
                    break;
                case double d:
                    text.Append(PyFloat(d));
                    break;
                case string s:
                    WriteString(s);
                    break;
                case IDictionary map:
                    WriteContainer('{', '}', map.Keys.Cast<object>().ToList(), depth, key =>
                    {
                        WriteString(Str(key));
                        text.Append(": ");
                        Write(map[key], depth + 1);
                    });
                    break;
                case IEnumerable list:
                    WriteContainer('[', ']', list.Cast<object?>().ToList(), depth, item => Write(item, depth + 1));
                    break;
                default:
                    WriteString(Str(v));
                    break;
            }
        }

        void WriteContainer<T>(char open, char close, List<T> items, int depth, Action<T> writeItem)
        {
            text.Append(open);
            if (items.Count == 0)
            {
                text.Append(close);
                return;
            }

            for (var i = 0; i < items.Count; i++)
            {
                if (i > 0) text.Append(indent is null ? ", " : ",");
                if (indent is not null) text.Append('\n').Append(' ', indent.Value * (depth + 1));
                writeItem(items[i]);
            }

            if (indent is not null) text.Append('\n').Append(' ', indent.Value * depth);
            text.Append(close);
        }

        void WriteString(string s)
        {
            text.Append('"');
            foreach (var c in s)
            {
                switch (c)
                {
                    case '"': text.Append("\\\""); break;
                    case '\\': text.Append("\\\\"); break;
                    case '\n': text.Append("\\n"); break;
                    case '\r': text.Append("\\r"); break;
                    case '\t': text.Append("\\t"); break;
                    case '\b': text.Append("\\b"); break;
                    case '\f': text.Append("\\f"); break;
                    default:
                        if (c < 0x20) text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else text.Append(c);
                        break;
                }
            }

            text.Append('"');
        }
    }
}
