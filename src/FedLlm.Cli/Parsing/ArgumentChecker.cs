using FedLlm.Configuration;

namespace FedLlm.Cli.Parsing;

/// <summary>
/// Checks a command line against the command's declared options before anything runs: an unknown option (with the
/// closest known one), a missing value, a value that does not parse or lies outside its range or name set — each named
/// with the flag and the form it expects. Old option names are accepted with a warning.
/// </summary>
public static class ArgumentChecker
{
    static readonly string[] HelpNames = ["-h", "--help", "-?", "--version", "-v"];

    /// <summary>The warnings (old names used); throws <see cref="ConfigurationException"/> on the first bad argument.</summary>
    public static IReadOnlyList<string> Check(IReadOnlyList<string> args, IReadOnlyList<CommandEntry> commands)
    {
        if (args.Count == 0 || args[0].StartsWith('-')) return [];
        var warnings = new List<string>();
        var topNames = commands.Where(c => !c.Hidden).Select(c => c.Path.Split(' ')[0]).Distinct().ToList();
        var entry = commands.FirstOrDefault(c => c.Path == args[0]);
        int start = 1;
        if (entry is null)
        {
            var branch = commands.Where(c => c.Path.StartsWith(args[0] + " ", StringComparison.Ordinal)).ToList();
            if (branch.Count == 0)
                throw new ConfigurationException($"unknown command '{args[0]}'{DidYouMean.Hint(args[0], topNames)}", ["fedllm --help lists the commands"]);
            if (args.Count < 2 || args[1].StartsWith('-')) return [];
            entry = branch.FirstOrDefault(c => c.Path == $"{args[0]} {args[1]}")
                ?? throw new ConfigurationException(
                    $"unknown command '{args[0]} {args[1]}'{DidYouMean.Hint(args[1], branch.Select(c => c.Path.Split(' ')[1]), args[0] + " ")}",
                    [$"fedllm {args[0]} --help lists its commands"]);
            start = 2;
        }

        var options = OptionInfo.Of(entry.Settings);
        var byName = options.SelectMany(o => o.AllNames.Select(n => (n, o))).ToDictionary(x => x.n, x => x.o, StringComparer.Ordinal);
        string command = $"fedllm {entry.Path}";
        for (int i = start; i < args.Count; i++)
        {
            string token = args[i];
            if (token == "--") break;
            if (!token.StartsWith('-') || token.Length == 1) continue; // a positional argument
            if (HelpNames.Contains(token)) return warnings;
            int eq = token.IndexOf('=');
            string name = eq > 0 ? token[..eq] : token;
            string? inline = eq > 0 ? token[(eq + 1)..] : null;
            if (!byName.TryGetValue(name, out var option))
                throw new ConfigurationException(
                    $"{command}: unknown option {name}{DidYouMean.Hint(name, options.SelectMany(o => o.AllNames))}",
                    [$"{command} --help lists its options"]);
            if (option.OldNames.Contains(name))
                warnings.Add($"{name} is the old name of {option.Name}; it will stop working in the next release");

            if (option.IsFlag)
            {
                string? flagValue = inline;
                if (flagValue is null && i + 1 < args.Count && args[i + 1] is "true" or "false" or "True" or "False") flagValue = args[++i];
                if (flagValue is not null && ValueRules.Parse(flagValue, typeof(bool), out _) is null)
                    throw new ConfigurationException($"{option.Name}: '{flagValue}' is not true or false (it is a switch: give {option.Name} alone)");
                continue;
            }
            string? value = inline;
            if (value is null)
            {
                bool hasNext = i + 1 < args.Count && !(args[i + 1].StartsWith("--", StringComparison.Ordinal) || byName.ContainsKey(args[i + 1]));
                if (!hasNext)
                    throw new ConfigurationException($"{option.Name} needs a value: {option.Name} {Form(option)}");
                value = args[++i];
            }
            CheckValue(option, value);
        }
        return warnings;
    }

    /// <summary>"N (a positive whole number)".</summary>
    public static string Form(OptionInfo option)
    {
        string valueName = option.Option.ValueName ?? "VALUE";
        string form = option.OneOf is { } names
            ? (option.IsList ? "a comma-separated list of " : "one of ") + string.Join(", ", names.Names)
            : ValueRules.Describe(option.ValueType, option.Rule);
        return $"{valueName} ({form})";
    }

    static void CheckValue(OptionInfo option, string value)
    {
        var type = option.ValueType;
        if (option.IsList || (Nullable.GetUnderlyingType(type) ?? type) == typeof(string))
        {
            var items = option.IsList ? value.Split(',', StringSplitOptions.TrimEntries) : [value];
            if (option.IsList && items.Any(x => x.Length == 0))
                throw new ConfigurationException($"{option.Name} '{value}': an empty item; expected {Form(option)}");
            if (option.OneOf is { } oneOf)
                foreach (var item in items)
                    if (ValueRules.CheckName(item, oneOf) is { } problem) throw new ConfigurationException($"{option.Name}: {problem}");
            if (value.Trim().Length == 0) throw new ConfigurationException($"{option.Name}: an empty value; expected {Form(option)}");
            return;
        }
        object? parsed = ValueRules.Parse(value, type, out string? parseProblem);
        if (parseProblem is not null) throw new ConfigurationException($"{option.Name}: {parseProblem}; expected {option.Name} {Form(option)}");
        if (ValueRules.Check(parsed, option.Rule) is { } rangeProblem)
            throw new ConfigurationException($"{option.Name}: {rangeProblem}; expected {option.Name} {Form(option)}");
    }
}
