using FedLlm.Cli.Commands;
using FedLlm.Runs;

namespace FedLlm.Cli.Parsing;

/// <summary>Where each run.yaml key of a <c>fedllm simulate</c> run got its value: a flag, a line of the --config file,
/// the embedded default (no --config) or the built-in default. Errors and --print-config name it.</summary>
public sealed class SettingOrigins
{
    readonly Dictionary<string, string> flags = new();
    readonly RunConfigFile? file;
    readonly string task;

    public SettingOrigins(SimulateSettings settings, RunConfigFile? file)
    {
        this.file = file;
        task = (settings.Task ?? "sft").Trim().ToLowerInvariant() is "dpo" ? "dpo" : "sft";
        foreach (var option in OptionInfo.Of(typeof(SimulateSettings)))
        {
            if (option.ConfigKey is not { } key) continue;
            object? value = option.Property.GetValue(settings);
            if (value is null or string[] { Length: 0 }) continue;
            flags[key.Path] = option.Name;
            if (key.Path == "strategy.server_learning_rate") flags["strategy.server_learning_rates"] = option.Name;
        }
    }

    /// <summary>For messages: "--rounds", "run.yaml line 7 (federation.rounds)", "the embedded default's federation.rounds"…</summary>
    public string Describe(string path) =>
        flags.TryGetValue(path, out string? flag) ? flag
        : file?.Describe(path) is { } line ? line
        : file is null ? $"the embedded default's {path}" : $"{path} (built-in default)";

    /// <summary>For --print-config comments: "--rounds", "run.yaml line 7", "embedded default" or "default".</summary>
    public string Source(string path) =>
        flags.TryGetValue(path, out string? flag) ? flag
        : file is not null && file.Lines.TryGetValue(path, out int line) ? $"{file.Path} line {line}"
        : file is null && !SameAsBuiltIn(path) ? "embedded default" : "default";

    /// <summary>Whether the embedded default leaves <paramref name="path"/> at the built-in default.</summary>
    bool SameAsBuiltIn(string path) => RunConfigSchema.Find(path) is { } key
        && Configuration.ValueRules.Format(Flat(key.Get(RunConfig.EmbeddedDefault(task)))) == Configuration.ValueRules.Format(Flat(key.Get(new RunConfig { Task = task })));

    static object? Flat(object? value) => value is System.Collections.IEnumerable list and not string
        ? string.Join(",", list.Cast<object?>().Select(x => x?.ToString()))
        : value;
}
