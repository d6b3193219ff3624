using FedLlm.Configuration;
using System.ComponentModel;
using FedLlm.Data;
using FedLlm.Data.Partitioning;
using FedLlm.Defaults;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class DataSplitSettings : CommandSettings
{
    [CommandOption("--data <FILE>")][Description("Alpaca-schema data; default: the embedded default's training set")] public string? Data { get; init; }
    [CommandOption("--clients <N>")][Check(ValueRule.Positive)][Description("Clients, one file each.")][DefaultValue(3)] public int Clients { get; init; } = 3;
    [CommandOption("--partition <KIND>")][OneOf("iid", "dirichlet", "shards", "quantity", Aliases = ["dir", "shard", "pathological", "quantity-skew", "quantityskew"])][Description("iid, dirichlet, shards or quantity (over the response).")][DefaultValue("iid")] public string Partition { get; init; } = "iid";
    [CommandOption("--alpha <X>")][Check(ValueRule.Positive)][Description("Dirichlet concentration α of dirichlet and quantity.")][DefaultValue(0.5)] public double Alpha { get; init; } = 0.5;
    [CommandOption("--seed <N>")][Description("Seed of the partition.")][DefaultValue(2023L)] public long Seed { get; init; } = 2023;
    [CommandOption("--output <DIR>")][Description("Folder for client-N.jsonl.")][DefaultValue("client-data")] public string Output { get; init; } = "client-data";
}

/// <summary>
/// <c>fedllm data split</c>: one Alpaca JSONL file per client (client-{i}.jsonl), partitioned exactly as
/// <c>fedllm simulate</c> partitions, so a networked run can be given the simulation's shards.
/// </summary>
public sealed class DataSplitCommand : Command<DataSplitSettings>
{
    public override int Execute(CommandContext context, DataSplitSettings s, CancellationToken cancellationToken)
    {
        if (s.Clients <= 0) throw new ArgumentException($"--clients {s.Clients} must be positive");
        string data = s.Data ?? EmbeddedDefault.Ensure(m => AnsiConsole.MarkupLineInterpolated($"[grey]{m}[/]")).TrainPath;
        var examples = AlpacaReader.ReadAll(data).Examples;
        var partitioner = new PartitionOptions { Kind = PartitionOptions.ParseKind(s.Partition), Alpha = s.Alpha }.Create();
        var partition = partitioner.Partition(examples.Select(e => (string?)e.Response.Trim()).ToList(), s.Clients, (ulong)s.Seed);
        Directory.CreateDirectory(s.Output);
        for (int c = 0; c < s.Clients; c++)
        {
            var mine = partition.Select(examples, c);
            string path = Path.Combine(s.Output, $"client-{c}.jsonl");
            AlpacaWriter.WriteJsonl(path, mine.Select(e => new AlpacaRecord(e.Instruction, "", e.Response)));
            AnsiConsole.MarkupLineInterpolated($"{path}: {mine.Count} examples");
        }
        return 0;
    }
}
