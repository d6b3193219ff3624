using Spectre.Console;
using Spectre.Console.Cli;
using Spectre.Console.Cli.Help;
using Spectre.Console.Rendering;

namespace FedLlm.Cli.Parsing;

/// <summary>Spectre's help with the options section from <see cref="OptionTable"/>: current names only (old names are
/// accepted, not advertised), every default shown, and the run.yaml key a flag sets.</summary>
public sealed class FedLlmHelpProvider(ICommandAppSettings settings) : HelpProvider(settings)
{
    public override IEnumerable<IRenderable> GetOptions(ICommandModel model, ICommandInfo? command)
    {
        var entry = command is null ? null : FedLlmApp.Commands.FirstOrDefault(c => c.Path == PathOf(command));
        if (entry is null) return base.GetOptions(model, command);
        var grid = new Grid().AddColumn(new GridColumn { Padding = new Padding(4, 0, 2, 0), NoWrap = true }).AddColumn();
        grid.AddRow(new Text("-h, --help"), new Text("Prints help information"));
        foreach (var row in OptionTable.Rows(entry))
        {
            string description = row.Description
                + (row.Default.Length > 0 && !row.DescribedDefault ? $" Default: {row.Default}." : "")
                + (row.ConfigKey is { } key ? $" run.yaml: {key}." : "");
            grid.AddRow(new Text(row.Names), new Text(description));
        }
        return [Text.NewLine, new Markup("[yellow]OPTIONS:[/]"), Text.NewLine, grid];
    }

    static string PathOf(ICommandInfo command) => command.Parent is { } parent ? $"{PathOf(parent)} {command.Name}" : command.Name;
}
