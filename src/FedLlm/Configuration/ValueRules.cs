using System.Globalization;

namespace FedLlm.Configuration;

/// <summary>The range a numeric setting must lie in; every floating-point setting must also be finite.</summary>
public enum ValueRule
{
    /// <summary>Any finite value.</summary>
    Any,

    /// <summary>Greater than zero.</summary>
    Positive,

    /// <summary>Zero or more.</summary>
    NonNegative,

    /// <summary>In [0, 1).</summary>
    Fraction,

    /// <summary>In [0, 1].</summary>
    Probability,
}

/// <summary>Declares the range of a numeric setting (a run.yaml key or a CLI flag), checked before any work.</summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class CheckAttribute(ValueRule rule) : Attribute
{
    /// <summary>The range the value must fall in.</summary>
    public ValueRule Rule { get; } = rule;
}

/// <summary>Declares the closed set of names a text setting (or each item of a list setting) takes; case-insensitive.
/// Aliases are accepted but not listed in messages.</summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class OneOfAttribute(params string[] names) : Attribute
{
    /// <summary>The advertised names; one comma-separated string is split (so a const list can be shared).</summary>
    public IReadOnlyList<string> Names { get; } = names.Length == 1 && names[0].Contains(',') ? names[0].Split(',') : names;

    /// <summary>Accepted too, not advertised (old or alternative spellings).</summary>
    public string[] Aliases { get; init; } = [];

    /// <summary>A value outside the set is accepted when it matches this prefix pattern, e.g. "cuda:" for cuda:N.</summary>
    public string? OpenPrefix { get; init; }

    /// <summary>Whether <paramref name="value"/> is one of the names or aliases (case-insensitive) or starts with
    /// <see cref="OpenPrefix"/>.</summary>
    public bool Accepts(string value) =>
        Names.Concat(Aliases).Any(n => string.Equals(n, value, StringComparison.OrdinalIgnoreCase))
        || (OpenPrefix is not null && value.StartsWith(OpenPrefix, StringComparison.OrdinalIgnoreCase));
}

/// <summary>Parsing and range checks of setting values, with messages that say the expected form.</summary>
public static class ValueRules
{
    /// <summary>The form a value of <paramref name="type"/> takes under <paramref name="rule"/>, e.g. "a positive whole number".</summary>
    public static string Describe(Type type, ValueRule rule = ValueRule.Any, bool example = true)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        bool whole = type == typeof(int) || type == typeof(long);
        if (type == typeof(bool)) return "true or false";
        if (!whole && type != typeof(double) && type != typeof(float)) return "text";
        string noun = whole ? "whole number" : "number";
        return rule switch
        {
            ValueRule.Positive => whole || !example ? $"a positive {noun}" : $"a positive {noun} such as 0.01 or 5e-5",
            ValueRule.NonNegative => $"a {noun} ≥ 0",
            ValueRule.Fraction => "a number in [0, 1)",
            ValueRule.Probability => "a number in [0, 1]",
            _ => whole ? $"a {noun}" : $"a finite {noun}",
        };
    }

    /// <summary>Parses <paramref name="text"/> as <paramref name="type"/> (int, long, double, bool, string); null and a
    /// problem when it does not parse.</summary>
    public static object? Parse(string text, Type type, out string? problem)
    {
        problem = null;
        var t = Nullable.GetUnderlyingType(type) ?? type;
        string s = text.Trim();
        if (t == typeof(string)) return text;
        if (t == typeof(int) && int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i)) return i;
        if (t == typeof(long) && long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long l)) return l;
        if (t == typeof(double) || t == typeof(float))
        {
            if (double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)) return d;
            // YAML's and the usual spellings of the non-finite values parse, so the range check can say what is wrong.
            switch (s.ToLowerInvariant())
            {
                case "nan" or ".nan": return double.NaN;
                case "inf" or "+inf" or "infinity" or ".inf" or "+.inf": return double.PositiveInfinity;
                case "-inf" or "-infinity" or "-.inf": return double.NegativeInfinity;
            }
        }
        if (t == typeof(bool))
        {
            if (s.Equals("true", StringComparison.OrdinalIgnoreCase)) return true;
            if (s.Equals("false", StringComparison.OrdinalIgnoreCase)) return false;
        }
        if (t.IsEnum && Enum.GetNames(t).FirstOrDefault(n => n.Equals(s, StringComparison.OrdinalIgnoreCase)) is { } name) return Enum.Parse(t, name);
        problem = t.IsEnum
            ? $"'{text}' is not one of {string.Join(", ", Enum.GetNames(t).Select(n => n.ToLowerInvariant()))}"
            : $"'{text}' is not {(t == typeof(double) || t == typeof(float) ? "a number" : Describe(t))}";
        return null;
    }

    /// <summary>Why <paramref name="value"/> breaks <paramref name="rule"/>, or null when it is fine. NaN and infinities
    /// break every rule.</summary>
    public static string? Check(object? value, ValueRule rule)
    {
        if (value is null) return null;
        double x;
        switch (value)
        {
            case int i: x = i; break;
            case long l: x = l; break;
            case double d: x = d; break;
            case float f: x = f; break;
            default: return null;
        }
        if (!double.IsFinite(x)) return $"{Format(x)} is not a finite number";
        bool ok = rule switch
        {
            ValueRule.Positive => x > 0,
            ValueRule.NonNegative => x >= 0,
            ValueRule.Fraction => x is >= 0 and < 1,
            ValueRule.Probability => x is >= 0 and <= 1,
            _ => true,
        };
        return ok ? null : $"{Format(x)} is not {Describe(value.GetType(), rule, example: false)}";
    }

    /// <summary>Why <paramref name="value"/> is not one of the names, with the closest one; null when it is.</summary>
    public static string? CheckName(string value, OneOfAttribute oneOf) =>
        oneOf.Accepts(value)
            ? null
            : $"'{value}' is not one of {string.Join(", ", oneOf.Names)}{(oneOf.OpenPrefix is { } p ? $" ({p}N)" : "")}{DidYouMean.Hint(value, oneOf.Names)}";

    /// <summary>The entries of a map (the non-generic enumerator of a generic dictionary yields key-value pairs, not
    /// <see cref="System.Collections.DictionaryEntry"/>).</summary>
    public static IEnumerable<System.Collections.DictionaryEntry> Entries(System.Collections.IDictionary map)
    {
        foreach (System.Collections.DictionaryEntry entry in map) yield return entry;
    }

    /// <summary>A value as the user would write it (invariant culture, shortest round-trip form).</summary>
    public static string Format(object? value) => value switch
    {
        null => "null",
        double d when double.IsNaN(d) => "nan",
        double d when double.IsPositiveInfinity(d) => "inf",
        double d when double.IsNegativeInfinity(d) => "-inf",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
