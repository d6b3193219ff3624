using FedLlm.Configuration;
using System.ComponentModel;
using FedLlm.Defaults;
using FedLlm.Export;
using FedLlm.Quantization;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class MergeSettings : CommandSettings
{
    [CommandOption("--model <DIR>")]
    [Description("The base Hugging Face checkpoint folder. Default: the embedded default model.")]
    public string? Model { get; init; }

    [CommandOption("--adapter <DIR>")]
    [Description("The PEFT adapter folder to fold into the base (adapter_config.json + adapter_model.safetensors).")]
    public string? Adapter { get; init; }

    [CommandOption("-o|--output <DIR>")]
    [Description("Where to write the merged checkpoint folder.")]
    public string? Output { get; init; }

    [CommandOption("--dtype <DTYPE>")]
    [OneOf("fp32", "bf16", "fp16")]
    [Description("Weights of the merged checkpoint: fp32, bf16 or fp16 (the merge itself is computed in fp32).")]
    [DefaultValue("fp32")]
    public string Dtype { get; init; } = "fp32";

    [CommandOption("--max-shard-size <MB>")]
    [Check(ValueRule.Positive)]
    [Description("Largest safetensors shard in MiB; bigger checkpoints are sharded with model.safetensors.index.json.")]
    [DefaultValue(5120L)]
    public long MaxShardMegabytes { get; init; } = 5120;

    [CommandOption("--base-dtype <DTYPE>")]
    [OneOf("fp32", "bf16", "int8", "nf4")]
    [Description("fp32 or bf16 (both merge at fp32); int8/nf4 bases are refused, since the merged weight would be re-quantised.")]
    [DefaultValue("fp32")]
    public string BaseDtype { get; init; } = "fp32";

    public override ValidationResult Validate() =>
        Output is null ? ValidationResult.Error("--output is required") : ValidationResult.Success();
}

/// <summary><c>fedllm merge</c>: base model + PEFT adapter → a plain Hugging Face checkpoint folder.</summary>
public sealed class MergeCommand : Command<MergeSettings>
{
    public override int Execute(CommandContext context, MergeSettings s, CancellationToken cancellationToken)
    {
        string modelDir = s.Model ?? EmbeddedDefault.Ensure(m => AnsiConsole.MarkupLineInterpolated($"[grey]{m}[/]")).ModelDirectory;
        var options = new MergeOptions
        {
            Dtype = MergeOptions.ParseDtype(s.Dtype),
            MaxShardBytes = checked(s.MaxShardMegabytes << 20),
            BasePrecision = BaseWeights.Parse(s.BaseDtype).Precision,
        };
        MergedCheckpointWriter.Write(modelDir, s.Adapter, s.Output!, options);
        AnsiConsole.MarkupLineInterpolated(
            $"wrote [green]{s.Output}[/] ({s.Dtype}{(s.Adapter is null ? ", no adapter" : $", adapter {s.Adapter} merged")})");
        return 0;
    }
}
