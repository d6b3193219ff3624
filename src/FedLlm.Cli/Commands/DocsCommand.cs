using FedLlm.Cli.Parsing;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

/// <summary><c>fedllm docs</c> (hidden): prints docs/cli.md from the command definitions.</summary>
public sealed class DocsCommand : Command<EmptyCommandSettings>
{
    public override int Execute(CommandContext context, EmptyCommandSettings settings, CancellationToken cancellationToken)
    {
        Console.Out.Write(CliReference.Markdown());
        return 0;
    }
}
