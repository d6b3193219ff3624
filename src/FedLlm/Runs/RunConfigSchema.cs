using System.Collections;
using System.Reflection;
using FedLlm.Configuration;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace FedLlm.Runs;

/// <summary>One key of run.yaml: its dotted path (<c>federation.rounds</c>), its type and the range its values take.</summary>
public sealed record RunConfigKey(string Path, string Name, string? Section, PropertyInfo? SectionProperty, PropertyInfo Property)
{
    /// <summary>The property's type (int?, double, List&lt;string&gt;, Dictionary&lt;string, double&gt;…).</summary>
    public Type Type => Property.PropertyType;

    /// <summary>A list of names (algorithms, baselines, target modules).</summary>
    public bool IsList => Type != typeof(string) && typeof(IList).IsAssignableFrom(Type);

    /// <summary>A map (server_learning_rates, evaluation params).</summary>
    public bool IsMap => typeof(IDictionary).IsAssignableFrom(Type);

    /// <summary>The scalar type of the value, or of a list item or map value.</summary>
    public Type ValueType => IsMap ? Type.GetGenericArguments()[1] : IsList ? Type.GetGenericArguments()[0] : Nullable.GetUnderlyingType(Type) ?? Type;

    /// <summary>Whether YAML <c>~</c> (null) is a value it takes.</summary>
    public bool IsNullable => !Type.IsValueType || Nullable.GetUnderlyingType(Type) is not null;

    /// <summary>The range check the key's value must pass (<see cref="CheckAttribute"/>); <see cref="ValueRule.Any"/>
    /// when unchecked.</summary>
    public ValueRule Rule => Property.GetCustomAttribute<CheckAttribute>()?.Rule ?? ValueRule.Any;
    /// <summary>The names the key's value must be one of, or null when it is free.</summary>
    public OneOfAttribute? OneOf => Property.GetCustomAttribute<OneOfAttribute>();

    /// <summary>The value in <paramref name="config"/>; null when the key's optional section (privacy, robust, attack) is absent.</summary>
    public object? Get(RunConfig config) => SectionOf(config, create: false) is { } target ? Property.GetValue(target) : null;

    /// <summary>Sets the value in <paramref name="config"/>, creating the key's optional section when it is absent.</summary>
    public void Set(RunConfig config, object? value) => Property.SetValue(SectionOf(config, create: true), value);

    object? SectionOf(RunConfig config, bool create)
    {
        if (SectionProperty is null) return config;
        var section = SectionProperty.GetValue(config);
        if (section is null && create)
        {
            section = Activator.CreateInstance(SectionProperty.PropertyType)!;
            SectionProperty.SetValue(config, section);
        }
        return section;
    }
}

/// <summary>
/// The keys of run.yaml, read from <see cref="RunConfig"/>'s properties (snake_case, as YamlDotNet names them), so the
/// schema cannot drift from the class: unknown-key checks, the CLI's flag mapping, <c>--print-config</c> and the docs use it.
/// </summary>
public static class RunConfigSchema
{
    static readonly INamingConvention Naming = UnderscoredNamingConvention.Instance;

    /// <summary>Every leaf key, in declaration order.</summary>
    public static IReadOnlyList<RunConfigKey> Keys { get; } = BuildKeys();

    /// <summary>The section names (model, data, federation…).</summary>
    public static IReadOnlyList<string> Sections { get; } = SectionProperties().Select(p => YamlName(p)).ToList();

    /// <summary>Old key names still read (with a warning) for one release, and their new names.</summary>
    public static IReadOnlyDictionary<string, string> RenamedKeys { get; } = new Dictionary<string, string>
    {
        ["federation.evaluate_every"] = "federation.eval_every",
        ["data.eval_path"] = "data.eval_data",
    };

    /// <summary>The key at <paramref name="path"/>, or null.</summary>
    public static RunConfigKey? Find(string path) => Keys.FirstOrDefault(k => k.Path == path);

    /// <summary>The YAML name of a property: its <see cref="YamlMemberAttribute.Alias"/> or its snake_case name.</summary>
    public static string YamlName(PropertyInfo property) =>
        property.GetCustomAttribute<YamlMemberAttribute>()?.Alias ?? Naming.Apply(property.Name);

    static IEnumerable<PropertyInfo> Settable(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanRead && p.SetMethod is { IsPublic: true });

    static bool IsSection(PropertyInfo p) => p.PropertyType.DeclaringType == typeof(RunConfig) && p.PropertyType.IsClass;

    static IEnumerable<PropertyInfo> SectionProperties() => Settable(typeof(RunConfig)).Where(IsSection);

    static List<RunConfigKey> BuildKeys()
    {
        var keys = new List<RunConfigKey>();
        foreach (var p in Settable(typeof(RunConfig)))
        {
            if (!IsSection(p))
            {
                keys.Add(new RunConfigKey(YamlName(p), YamlName(p), null, null, p));
                continue;
            }
            string section = YamlName(p);
            foreach (var leaf in Settable(p.PropertyType))
                keys.Add(new RunConfigKey($"{section}.{YamlName(leaf)}", YamlName(leaf), section, p, leaf));
        }
        return keys;
    }
}
