using System.ComponentModel;
using FedLlm.Security;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class CertsSettings : CommandSettings
{
    [CommandOption("--output|--out <DIR>")]
    [Description("Folder for the kit: ca/, server/, client-<id>/ (must not hold a kit yet, unless with --add-client).")]
    public string Out { get; init; } = "";

    [CommandOption("--server-host <HOSTS>")]
    [Description("Comma-separated DNS names and IP addresses the clients reach the server by; they go into its certificate.")]
    [DefaultValue("localhost,127.0.0.1")]
    public string ServerHost { get; init; } = "localhost,127.0.0.1";

    [CommandOption("--clients <IDS>")]
    [Description("Comma-separated client ids (letters, digits, '.', '_', '-'; up to 64 characters each).")]
    public string? Clients { get; init; }

    [CommandOption("--server-url <URL>")]
    [Description("https://HOST:PORT the clients dial, written into their client.yaml. Default: https://<first host>:50051.")]
    public string? ServerUrl { get; init; }

    [CommandOption("--add-client <ID>")]
    [Description("Add one client to the existing kit in --output with its CA; no other certificate or token changes.")]
    public string? AddClient { get; init; }

    [CommandOption("--admin <NAME>")]
    [Description("Issue an operator certificate for `fedllm admin` (admin-NAME/), with a new kit or an existing one in --out.")]
    public string? Admin { get; init; }

    internal static List<string> SplitList(string? text) =>
        (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    public override ValidationResult Validate()
    {
        if (string.IsNullOrWhiteSpace(Out)) return ValidationResult.Error("--output DIR is required: the folder the kit goes to");
        if (Admin is not null && Clients is null && AddClient is null)
        {
            if (ServerUrl is not null) return ValidationResult.Error("--admin on an existing kit uses its server URL; drop --server-url");
            return ValidationResult.Success();
        }
        if (AddClient is not null)
        {
            if (Clients is not null || ServerUrl is not null)
                return ValidationResult.Error("--add-client uses the existing kit's server URL and hosts; drop --clients and --server-url");
            return ValidationResult.Success();
        }
        if (SplitList(Clients).Count == 0) return ValidationResult.Error("--clients is required, e.g. --clients alice,bob,carol");
        if (SplitList(ServerHost).Count == 0) return ValidationResult.Error("--server-host needs at least one host name or IP address");
        return ValidationResult.Success();
    }
}

/// <summary>Provisions a federation's certificates and tokens (see <see cref="ProvisioningKit"/>).</summary>
public sealed class CertsCommand : Command<CertsSettings>
{
    public override int Execute(CommandContext context, CertsSettings s, CancellationToken cancellationToken)
    {
        try
        {
            return Provision(s);
        }
        catch (ArgumentException e) when (e.ParamName is not null)
        {
            // The library names its parameter ("(Parameter 'clientIds')"); the user typed a flag, so drop that suffix.
            throw new ArgumentException(e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal), e);
        }
    }

    private static int Provision(CertsSettings s)
    {
        var written = new List<KitFile>();
        if (s.Admin is not null && s.Clients is null && s.AddClient is null)
        {
            AnsiConsole.MarkupLineInterpolated($"Added admin [bold]{s.Admin}[/] to the kit in {s.Out}:");
        }
        else if (s.AddClient is not null)
        {
            written.AddRange(ProvisioningKit.AddClient(s.Out, s.AddClient));
            AnsiConsole.MarkupLineInterpolated($"Added client [bold]{s.AddClient}[/] to the kit in {s.Out}:");
        }
        else
        {
            var hosts = CertsSettings.SplitList(s.ServerHost);
            string url = s.ServerUrl ?? $"https://{(hosts[0].Contains(':') ? $"[{hosts[0]}]" : hosts[0])}:50051";
            written.AddRange(ProvisioningKit.Create(s.Out, hosts, CertsSettings.SplitList(s.Clients), url));
            AnsiConsole.MarkupLineInterpolated($"Provisioned a federation in {s.Out} (server {url}):");
        }
        if (s.Admin is not null) written.AddRange(ProvisioningKit.AddAdmin(s.Out, s.Admin));

        var table = new Table().Border(TableBorder.Rounded);
        table.AddColumn("file");
        table.AddColumn("what it is");
        table.AddColumn("secret");
        foreach (var file in written)
            table.AddRow(Markup.Escape(Path.GetRelativePath(s.Out, file.Path)), Markup.Escape(file.Purpose), file.Secret ? "[yellow]yes (0600)[/]" : "");
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine("Keep [bold]ca/[/] with the operator; copy [bold]server/[/] to the server and each [bold]client-<id>/[/] to its client.");
        if (s.AddClient is not null)
            AnsiConsole.MarkupLine($"Copy the updated [bold]server/{ClientTokens.FileName}[/] and [bold]server/{ClientCertificatePins.FileName}[/] " +
                "to the server (and its roster in server.yaml): without the pins file the server refuses the new client's certificate.");
        if (s.Admin is not null)
            AnsiConsole.MarkupLine($"Copy the updated [bold]server/{AdminCertificates.FileName}[/] to the server; keep [bold]admin-{s.Admin}/[/] with the operator.");
        return 0;
    }
}
