using FedLlm.Configuration;
using FedLlm.Runs;

namespace FedLlm.Cli.Parsing;

/// <summary>One row of a command's option reference: what --help shows and docs/cli.md lists.</summary>
public sealed record OptionRow(string Names, string Default, string Description, string? ConfigKey, IReadOnlyList<string> OldNames)
{
    /// <summary>Whether the description already says the default ("Default: …"), so help need not repeat it.</summary>
    public bool DescribedDefault => Description.Contains("Default: ", StringComparison.Ordinal);
}

/// <summary>The option reference of a command, from its settings class: names with the value form, the default (the
/// declared one, or for a run.yaml key the built-in and embedded-default values), the description and the YAML key.</summary>
public static class OptionTable
{
    public static IReadOnlyList<OptionRow> Rows(CommandEntry command) =>
        OptionInfo.Of(command.Settings).Where(o => !o.Option.IsHidden).Select(Row).ToList();

    static OptionRow Row(OptionInfo o)
    {
        string names = string.Join(", ", o.Option.ShortNames.Select(n => "-" + n).Append(o.Name))
            + (o.Option.ValueName is { } v ? $" <{v}>" : "");
        var key = o.ConfigKey;
        return new OptionRow(names, Default(o, key), o.Description, key?.Path, o.OldNames);
    }

    static string Default(OptionInfo o, RunConfigKey? key)
    {
        if (key is null && System.Text.RegularExpressions.Regex.Match(o.Description, @"Default: (.*?)(?:\.\s|\.$|$)") is { Success: true } said)
            return said.Groups[1].Value;
        if (key is null)
        {
            if (o.Default is { } d) return ValueRules.Format(d);
            return o.IsFlag ? "off" : "none";
        }
        string builtIn = RunConfigPrinter.Effective(new RunConfig(), key);
        string embedded = RunConfigPrinter.Effective(RunConfig.EmbeddedDefault("sft"), key);
        if (o.IsFlag && builtIn == "false") builtIn = "off";
        if (o.IsFlag && embedded == "false") embedded = "off";
        return builtIn == embedded ? builtIn : $"{builtIn}; embedded default: {embedded}";
    }
}
