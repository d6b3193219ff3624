using FedLlm.Configuration;
using System.ComponentModel;
using System.Globalization;
using FedLlm.Data;
using FedLlm.Data.Datasets;
using FedLlm.Data.Partitioning;
using FedLlm.Data.Statistics;
using FedLlm.Data.Templates;
using FedLlm.Tokenization;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class DataStatsSettings : CommandSettings
{
    [CommandOption("--dataset <KIND>")]
    [Description("alpaca, alpaca-gpt4, fingpt-sentiment, medalpaca, code-alpaca, mathinstruct, ultrafeedback, hh-rlhf, generic, generic-preference (or a hub id).")]
    public string Dataset { get; init; } = "";

    [CommandOption("--data|--path <FILE>")]
    [Description("The data file: JSON, JSON Lines (.gz too) or Parquet, in the data set's published schema.")]
    public string Path { get; init; } = "";

    [CommandOption("--format <FORMAT>")]
    [OneOf("auto", "json", "jsonl", "parquet")]
    [Description("auto (from the content), json, jsonl or parquet.")]
    [DefaultValue("auto")]
    public string Format { get; init; } = "auto";

    [CommandOption("--partition <SCHEME>")]
    [OneOf("iid", "dirichlet", "shards", "quantity", Aliases = ["dir", "shard", "pathological", "quantity-skew", "quantityskew"])]
    [Description("iid, dirichlet, shards (k labels per client) or quantity (skewed sizes).")]
    [DefaultValue("iid")]
    public string Partition { get; init; } = "iid";

    [CommandOption("--clients <N>")]
    [Check(ValueRule.Positive)]
    [Description("Clients the data is split among.")]
    [DefaultValue(10)]
    public int Clients { get; init; } = 10;

    [CommandOption("--alpha <X>")]
    [Check(ValueRule.Positive)]
    [Description("Dirichlet concentration for dirichlet and quantity.")]
    [DefaultValue(0.5)]
    public double Alpha { get; init; } = 0.5;

    [CommandOption("-k|--labels-per-client <N>")]
    [Check(ValueRule.Positive)]
    [Description("Labels per client for shards.")]
    [DefaultValue(2)]
    public int LabelsPerClient { get; init; } = 2;

    [CommandOption("--min-size <N>")]
    [Check(ValueRule.NonNegative)]
    [Description("Redraw dirichlet/quantity splits until every client has at least N examples.")]
    [DefaultValue(1)]
    public int MinSize { get; init; } = 1;

    [CommandOption("--strided")]
    [Description("iid as OpenFedLLM: client i gets rows j with j mod N = i.")]
    public bool Strided { get; init; }

    [CommandOption("--label <COLUMN>")]
    [Description("Column (or derived label) to split and count by. Defaults: fingpt-sentiment 'sentiment', mathinstruct 'source'.")]
    public string? Label { get; init; }

    [CommandOption("--seed <N>")]
    [Description("Seed of the partition.")]
    [DefaultValue(2023L)]
    public long Seed { get; init; } = 2023;

    [CommandOption("--chart <PNG>")]
    [Description("Where the stacked-bar chart goes. Default: partition-<dataset>-<scheme>.png in the current folder.")]
    public string? Chart { get; init; }

    [CommandOption("--skip-bad")]
    [Description("Skip malformed records (counted) instead of stopping at the first.")]
    public bool SkipBad { get; init; }

    [CommandOption("--model <DIR>")]
    [Description("A model folder whose tokenizer counts tokens per client.")]
    public string? Model { get; init; }

    [CommandOption("--template <NAME>")]
    [Description("SFT template for token counts: alpaca, vicuna, chatml, llama-3 or model; preference sets: vicuna_v1.1, chatml, llama-3 or model.")]
    public string? Template { get; init; }

    [CommandOption("--max-length <N>")]
    [Check(ValueRule.Positive)]
    [Description("Truncate SFT examples to N tokens when counting, as training does.")]
    [DefaultValue(512)]
    public int MaxLength { get; init; } = 512;

    [CommandOption("--instruction-column <NAME>")][Description("generic: the column holding the instruction. Default: instruction.")] public string? InstructionColumn { get; init; }
    [CommandOption("--input-column <NAME>")][Description("generic: the column holding the input. Default: input.")] public string? InputColumn { get; init; }
    [CommandOption("--response-column <NAME>")][Description("generic: the column holding the response. Default: output.")] public string? ResponseColumn { get; init; }

    public override ValidationResult Validate()
    {
        if (string.IsNullOrWhiteSpace(Dataset)) return ValidationResult.Error("--dataset is required");
        if (string.IsNullOrWhiteSpace(Path)) return ValidationResult.Error("--data is required: the data file to inspect");
        if (Clients <= 0) return ValidationResult.Error("--clients must be positive");
        if (MaxLength <= 0) return ValidationResult.Error("--max-length must be positive");
        return ValidationResult.Success();
    }
}

/// <summary>
/// <c>fedllm data stats</c>: loads a data set in its published schema, partitions it among clients and shows what
/// each client holds, as a table and a stacked-bar PNG.
/// </summary>
public sealed class DataStatsCommand : Command<DataStatsSettings>
{
    private const int MaxLabelColumns = 8;
    private const int MaxHeaderLength = 10;

    public override int Execute(CommandContext context, DataStatsSettings s, CancellationToken cancellationToken)
    {
        var kind = DatasetKinds.Parse(s.Dataset);
        var info = kind.Info();
        var partition = new PartitionOptions
        {
            Kind = PartitionOptions.ParseKind(s.Partition),
            Alpha = s.Alpha,
            LabelsPerClient = s.LabelsPerClient,
            MinExamplesPerClient = s.MinSize,
            Strided = s.Strided,
        };
        var partitioner = partition.Create();
        var label = s.Label ?? info.DefaultLabel;
        if (partitioner.UsesLabels && label is null)
            throw new ArgumentException($"--partition {s.Partition} splits by label, and {info.Name} has no default label; name a column with --label.");

        var tokenizer = s.Model is null ? null : TokenizerLoader.Load(s.Model);
        var options = new DatasetLoadOptions
        {
            Format = ParseFormat(s.Format),
            SkipBad = s.SkipBad,
            LabelColumn = label,
            Columns = kind == DatasetKind.Generic
                ? new ColumnMapping(
                    s.InstructionColumn ?? throw new ArgumentException("--dataset generic needs --instruction-column and --response-column."),
                    s.ResponseColumn ?? throw new ArgumentException("--dataset generic needs --response-column."),
                    s.InputColumn)
                : null,
            Conversation = info.IsPreference ? TemplateCatalog.Conversation(s.Template ?? "vicuna_v1.1", tokenizer) : null,
        };

        // Stream: only a label and a token count per example stay in memory, whatever the file's size.
        var report = new DataReadReport();
        var labels = new List<string?>();
        var tokens = tokenizer is null ? null : new List<int>();
        var truncated = 0;
        if (info.IsPreference)
        {
            // Cut a huge pair before counting, so it costs memory per --max-length, not per record; a count then reads
            // as "more than training keeps", which is all a count past the limit can tell.
            var charsPerEnd = tokenizer is null ? 0 : TokenizerInputCap.CharsPerEnd(tokenizer, s.MaxLength);
            foreach (var row in DatasetLoader.ReadPreferences(kind, s.Path, options, report, cancellationToken))
            {
                labels.Add(row.Label);
                var text = TokenizerInputCap.KeepEnds(row.Example.Prompt + row.Example.Chosen, charsPerEnd);
                tokens?.Add(tokenizer!.Encode(text, addSpecialTokens: true).Count);
            }
        }
        else
        {
            var builder = tokenizer is null ? null : new SftExampleBuilder(tokenizer, TemplateCatalog.Sft(s.Template ?? "alpaca", tokenizer), s.MaxLength);
            foreach (var row in DatasetLoader.ReadInstructions(kind, s.Path, options, report, cancellationToken))
            {
                labels.Add(row.Label);
                if (builder is null) continue;
                var example = builder.Build(row.Example);
                tokens!.Add(example.Length);
                if (example.Truncated) truncated++;
            }
        }

        var split = partitioner.Partition(labels, s.Clients, unchecked((ulong)s.Seed));
        var stats = PartitionReport.Compute(split, labels, tokens, partitioner.Description);

        AnsiConsole.MarkupLineInterpolated($"[bold]{info.Name}[/] [cyan]{s.Path}[/]: {report}");
        foreach (var error in report.SkippedErrors.Take(5)) AnsiConsole.MarkupLineInterpolated($"  [yellow]skipped:[/] {error.Message}");
        if (report.RecordsSkipped > 5) AnsiConsole.MarkupLineInterpolated($"  [yellow]... {report.RecordsSkipped - 5} more skipped[/]");
        AnsiConsole.MarkupLineInterpolated($"{stats.Description} over {s.Clients} clients, seed {s.Seed}{(label is null ? "" : $", label '{label}' ({stats.Labels.Count} values)")}{(tokens is null || info.IsPreference ? "" : $", {truncated} examples truncated to {s.MaxLength} tokens")}");
        var numbered = stats.Labels.Take(MaxLabelColumns).Any(l => l.Length > MaxHeaderLength);
        AnsiConsole.Write(BuildTable(stats, numbered));
        if (numbered)
        {
            // Long labels (MathInstruct's "data/CoT/aqua_rat.json") would squeeze the table; number them instead.
            for (var k = 0; k < Math.Min(stats.Labels.Count, MaxLabelColumns); k++)
                AnsiConsole.MarkupLineInterpolated($"  [bold]#{k + 1}[/] {stats.Labels[k]} ({stats.TotalLabelCounts[k]})");
        }

        var chart = s.Chart ?? $"partition-{info.Name}-{s.Partition.ToLowerInvariant()}.png";
        var title = $"{info.Name}: {stats.Description}, {s.Clients} clients" + (label is null ? "" : $", by {label}");
        PartitionChart.WritePng(stats, chart, title);
        AnsiConsole.MarkupLineInterpolated($"chart written to [cyan]{System.IO.Path.GetFullPath(chart)}[/]");
        return 0;
    }

    private static Table BuildTable(PartitionReport stats, bool numbered)
    {
        var table = new Table().Border(TableBorder.Rounded);
        table.AddColumn(new TableColumn("client").RightAligned());
        table.AddColumn(new TableColumn("examples").RightAligned());
        var hasTokens = stats.TotalTokens is not null;
        if (hasTokens) table.AddColumn(new TableColumn("tokens").RightAligned());
        var shown = Math.Min(stats.Labels.Count, MaxLabelColumns);
        for (var k = 0; k < shown; k++) table.AddColumn(new TableColumn(numbered ? $"#{k + 1}" : Markup.Escape(stats.Labels[k])).RightAligned());
        if (stats.Labels.Count > shown) table.AddColumn(new TableColumn($"{stats.Labels.Count - shown} other").RightAligned());
        if (stats.Labels.Count > 0) table.AddColumn(new TableColumn("TV to all").RightAligned());

        foreach (var client in stats.Clients)
        {
            var cells = new List<string> { client.Client.ToString(CultureInfo.InvariantCulture), client.Examples.ToString("N0", CultureInfo.InvariantCulture) };
            if (hasTokens) cells.Add((client.Tokens ?? 0).ToString("N0", CultureInfo.InvariantCulture));
            cells.AddRange(client.LabelCounts.Take(shown).Select(n => n == 0 ? "[grey]0[/]" : n.ToString("N0", CultureInfo.InvariantCulture)));
            if (stats.Labels.Count > shown) cells.Add(client.LabelCounts.Skip(shown).Sum().ToString("N0", CultureInfo.InvariantCulture));
            if (stats.Labels.Count > 0) cells.Add(client.LabelDistance is { } d ? d.ToString("F2", CultureInfo.InvariantCulture) : "-");
            table.AddRow(cells.ToArray());
        }

        var total = new List<string> { "[bold]all[/]", $"[bold]{stats.TotalExamples.ToString("N0", CultureInfo.InvariantCulture)}[/]" };
        if (hasTokens) total.Add($"[bold]{stats.TotalTokens!.Value.ToString("N0", CultureInfo.InvariantCulture)}[/]");
        total.AddRange(stats.TotalLabelCounts.Take(shown).Select(n => $"[bold]{n.ToString("N0", CultureInfo.InvariantCulture)}[/]"));
        if (stats.Labels.Count > shown) total.Add($"[bold]{stats.TotalLabelCounts.Skip(shown).Sum().ToString("N0", CultureInfo.InvariantCulture)}[/]");
        if (stats.Labels.Count > 0) total.Add("");
        table.AddRow(total.ToArray());
        return table;
    }

    private static DataFileFormat ParseFormat(string name) => name.ToLowerInvariant() switch
    {
        "auto" => DataFileFormat.Auto,
        "json" => DataFileFormat.JsonArray,
        "jsonl" or "json-lines" => DataFileFormat.JsonLines,
        "parquet" => DataFileFormat.Parquet,
        _ => throw new ArgumentException($"--format '{name}' is not one of auto, json, jsonl, parquet"),
    };
}
