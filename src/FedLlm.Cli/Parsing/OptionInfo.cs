using System.ComponentModel;
using System.Reflection;
using FedLlm.Configuration;
using FedLlm.Runs;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Parsing;

/// <summary>One option of a command as declared on its settings class: its names (the first long name is current, the
/// others are old names kept for one release), value, range, description and default.</summary>
public sealed record OptionInfo(PropertyInfo Property, CommandOptionAttribute Option)
{
    /// <summary>The current name, e.g. "--learning-rate".</summary>
    public string Name => Option.LongNames.Count > 0 ? "--" + Option.LongNames[0] : "-" + Option.ShortNames[0];

    /// <summary>Old names still accepted (with a warning), e.g. "--lr".</summary>
    public IReadOnlyList<string> OldNames => Option.LongNames.Skip(1).Select(n => "--" + n).ToList();

    /// <summary>Every accepted spelling, with dashes.</summary>
    public IEnumerable<string> AllNames => Option.LongNames.Select(n => "--" + n).Concat(Option.ShortNames.Select(n => "-" + n));

    /// <summary>Whether it is a switch (no value).</summary>
    public bool IsFlag => Option.ValueName is null;

    /// <summary>The run.yaml key it sets, or null.</summary>
    public RunConfigKey? ConfigKey => Property.GetCustomAttribute<ConfigKeyAttribute>() is { } k
        ? RunConfigSchema.Find(k.Path) ?? throw new InvalidOperationException($"{Name}: no run.yaml key {k.Path}")
        : null;

    /// <summary>The scalar type of one value (the element type of a repeatable option).</summary>
    public Type ValueType => Property.PropertyType.IsArray ? Property.PropertyType.GetElementType()! : Property.PropertyType;

    /// <summary>The range its values take (its own, or its run.yaml key's).</summary>
    public ValueRule Rule => Property.GetCustomAttribute<CheckAttribute>()?.Rule ?? ConfigKey?.Rule ?? ValueRule.Any;

    /// <summary>The names its values take (its own, or its run.yaml key's), or null when open.</summary>
    public OneOfAttribute? OneOf => Property.GetCustomAttribute<OneOfAttribute>() ?? ConfigKey?.OneOf;

    /// <summary>Whether a value is a comma-separated list whose items are checked one by one.</summary>
    public bool IsList => ConfigKey?.IsList == true || Property.GetCustomAttribute<ListValueAttribute>() is not null;

    public string Description => Property.GetCustomAttribute<DescriptionAttribute>()?.Description ?? "";

    public object? Default => Property.GetCustomAttribute<DefaultValueAttribute>()?.Value;

    /// <summary>The options of a settings class, in declaration order (base class first).</summary>
    public static IReadOnlyList<OptionInfo> Of(Type settings) =>
        Hierarchy(settings).SelectMany(t => t.GetProperties(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly))
            .Select(p => (p, a: p.GetCustomAttribute<CommandOptionAttribute>()))
            .Where(x => x.a is not null)
            .Select(x => new OptionInfo(x.p, x.a!))
            .ToList();

    static IEnumerable<Type> Hierarchy(Type t)
    {
        var chain = new List<Type>();
        for (var x = t; x is not null && x != typeof(CommandSettings) && x != typeof(object); x = x.BaseType) chain.Add(x);
        chain.Reverse();
        return chain;
    }
}

/// <summary>Marks a text option whose value is a comma-separated list checked item by item.</summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class ListValueAttribute : Attribute;
