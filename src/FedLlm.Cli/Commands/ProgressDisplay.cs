using Spectre.Console;

namespace FedLlm.Cli.Commands;

/// <summary>The one progress display every long-running command shows: description, bar, percent, elapsed, ETA; kept on screen when done.</summary>
internal static class ProgressDisplay
{
    public static Progress Create() => AnsiConsole.Progress()
        .AutoClear(false)
        .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn());
}
