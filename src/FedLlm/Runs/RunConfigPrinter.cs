using System.Collections;
using System.Text;
using FedLlm.Configuration;
using FedLlm.Federation;

namespace FedLlm.Runs;

/// <summary>
/// The effective settings of a run as YAML that <see cref="RunConfig.Load"/> reads back: every key of
/// <see cref="RunConfigSchema"/>, keys left unset shown with the value they resolve to, and after each a comment saying
/// where its value came from.
/// </summary>
public static class RunConfigPrinter
{
    /// <param name="origin">Where a key's value came from ("--rounds", "run.yaml line 3", "embedded default"…).</param>
    /// <param name="config">The settings to print, as resolved (task defaults filled in).</param>
    public static string ToYaml(RunConfig config, Func<string, string> origin)
    {
        var resolved = Resolved(config);
        var text = new StringBuilder();
        string? section = null;
        foreach (var key in RunConfigSchema.Keys)
        {
            if (key.Section != section)
            {
                section = key.Section;
                // An optional section that is absent (privacy, robust, attack) prints as such, not as keys without values.
                if (section is not null && key.SectionProperty?.GetValue(config) is null)
                {
                    text.Append("# ").Append(section).Append(": none (no such section; set its keys to enable it)\n");
                    continue;
                }
                if (section is not null) text.Append(section).Append(":\n");
            }
            else if (section is not null && key.SectionProperty?.GetValue(config) is null) continue;
            object? value = key.Get(config);
            string from = origin(key.Path);
            if (value is null && resolved.TryGetValue(key.Path, out var r))
            {
                value = r.Value;
                from = r.Note;
            }
            if (value is IDictionary { Count: 0 } && key.Path == "strategy.server_learning_rates") from = "none: server_learning_rate for every algorithm";
            text.Append(section is null ? "" : "  ").Append(key.Name).Append(": ").Append(Format(value)).Append("  # ").Append(from).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>The value <paramref name="key"/> takes in <paramref name="config"/>, as YAML; a key left null shows what it
    /// resolves to (e.g. the task's default), or a short note when it stays unset.</summary>
    public static string Effective(RunConfig config, RunConfigKey key)
    {
        object? value = key.Get(config);
        if (value is not null && value is not System.Collections.IDictionary { Count: 0 }) return Format(value);
        if (Resolved(config).TryGetValue(key.Path, out var r)) return r.Value is null ? r.Note.Replace("default: ", "") : Format(r.Value);
        return value is null ? "none" : Format(value);
    }

    /// <summary>What keys left null resolve to (the task's defaults, the papers' defaults), and why.</summary>
    static Dictionary<string, (object? Value, string Note)> Resolved(RunConfig config)
    {
        string task = config.Task.ToLowerInvariant();
        var t = task is "sft" or "dpo" ? RunConfig.TaskDefaults.For(task) : RunConfig.TaskDefaults.Sft;
        var s = new StrategyOptions();
        string taskNote = $"default for task {task}";
        return new()
        {
            ["federation.clients"] = (t.Clients, taskNote),
            ["federation.learning_rate"] = (t.LearningRate, taskNote),
            ["federation.min_learning_rate"] = (t.MinLearningRate, taskNote),
            ["lora.r"] = (t.LoraRank, taskNote),
            ["lora.alpha"] = (t.LoraAlpha, taskNote),
            ["data.dataset"] = (null, "default: the task's schema (alpaca for sft, generic-preference for dpo)"),
            ["strategy.proximal_mu"] = (s.ProximalMu, "default (FedProx paper)"),
            ["strategy.server_momentum"] = (s.ServerMomentum, "default"),
            ["strategy.beta1"] = (s.Beta1, "default (FedOpt paper)"),
            ["strategy.beta2"] = (s.Beta2, "default (FedOpt paper)"),
            ["strategy.tau"] = (s.Tau, "default (FedOpt paper)"),
            ["strategy.server_learning_rate"] = (null,
                $"default: each algorithm's own (fedavgm {ValueRules.Format(StrategyOptions.DefaultFedAvgMServerLearningRate)}, " +
                $"fedadagrad/fedyogi/fedadam {ValueRules.Format(StrategyOptions.DefaultFedOptServerLearningRate)})"),
            ["model.path"] = (null, "default: the embedded default model"),
            ["data.path"] = (null, config.Model.Path is null ? "default: the embedded default data" : "none: set data.path / --data"),
            ["data.eval_data"] = (null, config.Model.Path is null ? "default: the embedded held-out set" : "none: no held-out scoring"),
            ["data.eval_limit"] = (null, "none: every held-out example"),
            ["threads"] = (null, "default: all cores"),
            ["output"] = (null, "default: runs/simulate-<time>"),
        };
    }

    static string Format(object? value) => value switch
    {
        null => "~",
        string s => Quote(s),
        IDictionary map => "{" + string.Join(", ", ValueRules.Entries(map).Select(e => $"{Quote(e.Key.ToString()!)}: {Format(e.Value)}")) + "}",
        IEnumerable list => "[" + string.Join(", ", list.Cast<object?>().Select(Format)) + "]",
        _ => ValueRules.Format(value),
    };

    static string Quote(string s) =>
        s.Length == 0 || s.IndexOfAny([':', '#', '[', ']', '{', '}', ',', '\'', '"', '&', '*', '!', '|', '>', '%', '@', '`']) >= 0
        || s is "~" or "null" or "true" or "false" || double.TryParse(s, out _) || char.IsWhiteSpace(s[0]) || char.IsWhiteSpace(s[^1])
            ? "'" + s.Replace("'", "''") + "'"
            : s;
}
