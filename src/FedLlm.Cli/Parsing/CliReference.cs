using System.Text;

namespace FedLlm.Cli.Parsing;

/// <summary>docs/cli.md: every command and option, rendered from the command definitions (a test keeps the committed
/// file equal to this output; regenerate with <c>fedllm docs &gt; docs/cli.md</c>).</summary>
public static class CliReference
{
    public static string Markdown()
    {
        var text = new StringBuilder();
        text.Append("# fedllm command reference\n\n");
        text.Append("Generated from the command definitions by `fedllm docs > docs/cli.md`; a test checks this file is current.\n\n");
        text.Append("Naming: a flag is its run.yaml key's last part with dashes (`federation.learning_rate` ⇔ `--learning-rate`);\n");
        text.Append("`lora`, `privacy`, `robust`, `attack`, `personalization` and `async` keys take their section as prefix (`--lora-r`,\n");
        text.Append("`--privacy-mode`, `--async-buffer-size`; `async.enabled` is `--async`), `secure_aggregation`\n");
        text.Append("keys `secagg-` (its `enabled` is `--secure-aggregation`), `evaluation` keys\n");
        text.Append("`eval-task-`, and a section's `path` is the section's name\n");
        text.Append("(`model.path` ⇔ `--model`, `data.path` ⇔ `--data`). Precedence: flag > `--config` file > embedded default (without\n");
        text.Append("`--config`) > built-in default; `fedllm simulate --print-config` shows the result and where each value came from.\n");
        text.Append("Old names are still accepted for one release, with a warning.\n\n");
        foreach (var command in FedLlmApp.Commands.Where(c => !c.Hidden))
        {
            text.Append($"## fedllm {command.Path}\n\n{command.Description}\n\n");
            var rows = OptionTable.Rows(command);
            if (rows.Count == 0)
            {
                text.Append("No options.\n\n");
                continue;
            }
            text.Append("| option | default | run.yaml | description |\n| --- | --- | --- | --- |\n");
            foreach (var row in rows)
            {
                string description = row.Description + (row.OldNames.Count > 0 ? $" Old name: {string.Join(", ", row.OldNames.Select(n => $"`{n}`"))}." : "");
                text.Append($"| `{Cell(row.Names)}` | {Cell(row.Default)} | {(row.ConfigKey is { } k ? $"`{k}`" : "")} | {Cell(description)} |\n");
            }
            text.Append('\n');
        }
        return text.ToString();
    }

    static string Cell(string text) => text.Replace("|", "\\|").Replace("\n", " ");
}
