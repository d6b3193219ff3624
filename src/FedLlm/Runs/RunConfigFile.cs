using FedLlm.Configuration;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace FedLlm.Runs;

/// <summary>
/// A run.yaml as read: the settings, the line of each key (so later checks can point at it) and warnings about old key
/// names. Reading checks the shape before binding: an empty file, an unknown key (with the closest known one), a value
/// of the wrong type or a section that is not a mapping are errors naming the file, line and key.
/// </summary>
public sealed class RunConfigFile
{
    RunConfigFile(string path, RunConfig config, IReadOnlyDictionary<string, int> lines, IReadOnlyList<string> warnings)
    {
        Path = path;
        Config = config;
        Lines = lines;
        Warnings = warnings;
    }

    /// <summary>The file as given.</summary>
    public string Path { get; }
    /// <summary>The settings, bound from the file (keys left out keep their defaults).</summary>
    public RunConfig Config { get; }

    /// <summary>The 1-based line of each key present in the file, by dotted path.</summary>
    public IReadOnlyDictionary<string, int> Lines { get; }

    /// <summary>Old key names used in the file.</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>"run.yaml line 7 (federation.rounds)", or null when the file does not set <paramref name="path"/>.</summary>
    public string? Describe(string path) => Lines.TryGetValue(path, out int line) ? $"{Path} line {line} ({path})" : null;

    /// <summary>Reads and checks <paramref name="path"/>.</summary>
    /// <exception cref="ConfigurationException">The file is missing, empty, not YAML, or has unknown keys or wrongly typed values.</exception>
    public static RunConfigFile Load(string path)
    {
        if (Directory.Exists(path)) throw new ConfigurationException($"{path}: is a folder; --config takes a run.yaml file");
        if (!File.Exists(path)) throw new ConfigurationException($"{path}: config file not found");
        string text = File.ReadAllText(path);
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new ConfigurationException($"{path} line {e.Start.Line}, column {e.Start.Column}: not valid YAML: {Clean(e.Message)}");
        }
        var root = stream.Documents.FirstOrDefault()?.RootNode;
        if (root is null || root is YamlScalarNode { Value: null or "" } || root is YamlMappingNode { Children.Count: 0 })
            throw Empty(path);
        if (root is not YamlMappingNode mapping)
            throw new ConfigurationException($"{path} line {root.Start.Line}: expected sections (model:, data:, federation:, …) at the top, got {Kind(root)}");

        var lines = new Dictionary<string, int>();
        var problems = new List<string>();
        var warnings = new List<string>();
        Check(path, mapping, section: null, lines, problems, warnings);
        ConfigurationException.ThrowIfAny(problems);
        if (!lines.Keys.Any(k => RunConfigSchema.Find(k) is not null)) throw Empty(path);

        var writer = new StringWriter();
        stream.Save(writer, assignAnchors: false);
        var deserializer = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build();
        try
        {
            var config = deserializer.Deserialize<RunConfig>(writer.ToString()) ?? throw Empty(path);
            return new RunConfigFile(path, config, lines, warnings);
        }
        catch (YamlException e)
        {
            // The checks above should have caught it; still, never show the binder's type names.
            throw new ConfigurationException($"{path} line {e.Start.Line}, column {e.Start.Column}: {Clean(e.InnerException?.Message ?? e.Message)}");
        }
    }

    static ConfigurationException Empty(string path) => new(
        $"{path}: the file has no settings; an empty config would silently run the 200-round defaults",
        ["write the settings you want, or start from the resolved view: fedllm simulate --print-config > run.yaml"]);

    static void Check(string file, YamlMappingNode mapping, string? section, Dictionary<string, int> lines, List<string> problems, List<string> warnings)
    {
        foreach (var (keyNode, value) in mapping.Children.ToList())
        {
            if (keyNode is not YamlScalarNode { Value: { } name })
            {
                problems.Add($"{file} line {keyNode.Start.Line}: a key must be a plain name, got {Kind(keyNode)}");
                continue;
            }
            string at = $"{file} line {keyNode.Start.Line}";
            string path = section is null ? name : $"{section}.{name}";
            if (RunConfigSchema.RenamedKeys.TryGetValue(path, out string? renamed))
            {
                warnings.Add($"{at}: {path} is the old name of {renamed}; it will stop working in the next release");
                path = renamed;
                ((YamlScalarNode)keyNode).Value = renamed[(renamed.LastIndexOf('.') + 1)..];
            }
            lines[path] = (int)keyNode.Start.Line;

            if (section is null && RunConfigSchema.Sections.Contains(path))
            {
                if (value is YamlScalarNode { Value: null or "" } or YamlScalarNode { Style: not ScalarStyle.Plain, Value: "" })
                {
                    mapping.Children.Remove(keyNode); // "federation:" with nothing under it: the section's defaults
                    continue;
                }
                if (value is not YamlMappingNode inner)
                {
                    problems.Add($"{at}: {path} is a section (keys under it, indented), got {Kind(value)}");
                    continue;
                }
                Check(file, inner, path, lines, problems, warnings);
                continue;
            }
            var key = RunConfigSchema.Find(path);
            if (key is null)
            {
                var known = section is null
                    ? RunConfigSchema.Sections.Concat(RunConfigSchema.Keys.Where(k => k.Section is null).Select(k => k.Name))
                    : RunConfigSchema.Keys.Where(k => k.Section == section).Select(k => k.Name);
                string where = section is null ? "at the top level" : $"in section {section}";
                problems.Add($"{at}: unknown key '{name}' {where}{DidYouMean.Hint(name, known)}; known: {string.Join(", ", known)}");
                continue;
            }
            CheckValue(at, key, keyNode, value, mapping, problems);
        }
    }

    static void CheckValue(string at, RunConfigKey key, YamlNode keyNode, YamlNode value, YamlMappingNode parent, List<string> problems)
    {
        string expected = ValueRules.Describe(key.ValueType);
        if (key.IsList)
        {
            if (value is YamlScalarNode { Value: { Length: > 0 } one } && value is YamlScalarNode scalar)
            {
                // A single name or a comma-separated line, as the flag takes it: a one-item list.
                var items = new YamlSequenceNode(one.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(x => new YamlScalarNode(x)));
                parent.Children[keyNode] = items;
                return;
            }
            if (value is not YamlSequenceNode sequence)
            {
                problems.Add($"{at}: {key.Path} takes a list of names such as [a, b], got {Kind(value)}");
                return;
            }
            foreach (var item in sequence.Children)
                if (item is not YamlScalarNode)
                    problems.Add($"{at}: {key.Path} takes a list of names, got an item that is {Kind(item)}");
            return;
        }
        if (key.IsMap)
        {
            if (value is not YamlMappingNode map)
            {
                problems.Add($"{at}: {key.Path} takes NAME: VALUE pairs (indented under it), got {Kind(value)}");
                return;
            }
            foreach (var (k, v) in map.Children)
            {
                if (v is not YamlScalarNode { Value: { } text })
                {
                    problems.Add($"{at}: {key.Path}.{k}: expected {expected}, got {Kind(v)}");
                    continue;
                }
                ValueRules.Parse(text, key.ValueType, out string? problem);
                if (problem is not null) problems.Add($"{at}: {key.Path}.{k}: {problem}");
            }
            return;
        }
        if (value is not YamlScalarNode { } s)
        {
            problems.Add($"{at}: {key.Path} takes {expected}, got {Kind(value)}");
            return;
        }
        if (s.Value is null || (s.Style == ScalarStyle.Plain && s.Value is "" or "~" or "null"))
        {
            if (!key.IsNullable) problems.Add($"{at}: {key.Path} needs a value ({expected})");
            return;
        }
        if (key.ValueType != typeof(string))
        {
            ValueRules.Parse(s.Value, key.ValueType, out string? problem);
            if (problem is not null) problems.Add($"{at}: {key.Path}: {problem}");
        }
    }

    static string Kind(YamlNode node) => node switch
    {
        YamlMappingNode => "a section of keys",
        YamlSequenceNode => "a list",
        YamlScalarNode { Value: null or "" } => "nothing",
        YamlScalarNode s => $"'{s.Value}'",
        _ => "something else",
    };

    /// <summary>YamlDotNet's message without its "(Line: …)" suffix.</summary>
    static string Clean(string message)
    {
        int cut = message.IndexOf("(Line:", StringComparison.Ordinal);
        string first = (cut > 0 ? message[..cut] : message).Split('\n')[0].Trim();
        return first.Contains("System.") || first.Contains("deserializer", StringComparison.OrdinalIgnoreCase) ? "the value does not have the expected type" : first;
    }
}
