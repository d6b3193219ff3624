using FedLlm.Configuration;
using System.ComponentModel;
using FedLlm.Defaults;
using FedLlm.Export;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class ExportSettings : CommandSettings
{
    [CommandOption("--model <DIR>")]
    [Description("The Hugging Face checkpoint folder to export. Default: the embedded default model.")]
    public string? Model { get; init; }

    [CommandOption("--adapter <DIR>")]
    [Description("A PEFT adapter folder to merge into the weights first.")]
    public string? Adapter { get; init; }

    [CommandOption("--format <FORMAT>")]
    [OneOf("gguf")]
    [Description("Output format; gguf (llama.cpp) is the one supported.")]
    [DefaultValue("gguf")]
    public string Format { get; init; } = "gguf";

    [CommandOption("--type <TYPE>")]
    [OneOf("f32", "f16", "q8_0")]
    [Description("Weight type: f32, f16 or q8_0 (rows not divisible by 32 fall back to f16; norms stay f32).")]
    [DefaultValue("f16")]
    public string Type { get; init; } = "f16";

    [CommandOption("-o|--output <FILE>")]
    [Description("The .gguf file to write.")]
    public string? Output { get; init; }

    [CommandOption("--name <NAME>")]
    [Description("general.name in the file. Default: the model folder's name.")]
    public string? Name { get; init; }

    public override ValidationResult Validate()
    {
        if (Output is null) return ValidationResult.Error("--output is required");
        return Format.Equals("gguf", StringComparison.OrdinalIgnoreCase)
            ? ValidationResult.Success()
            : ValidationResult.Error($"--format '{Format}' is not supported; use gguf");
    }
}

/// <summary><c>fedllm export --format gguf</c>: a model (+ adapter) as a llama.cpp GGUF file.</summary>
public sealed class ExportCommand : Command<ExportSettings>
{
    public override int Execute(CommandContext context, ExportSettings s, CancellationToken cancellationToken)
    {
        string modelDir = s.Model ?? EmbeddedDefault.Ensure(m => AnsiConsole.MarkupLineInterpolated($"[grey]{m}[/]")).ModelDirectory;
        var options = new GgufExportOptions { WeightType = GgufExportOptions.ParseType(s.Type), AdapterDirectory = s.Adapter, Name = s.Name };
        var result = GgufLlamaExporter.Export(modelDir, s.Output!, options);
        AnsiConsole.MarkupLineInterpolated($"wrote [green]{result.Path}[/]: {result.TensorCount} tensors, {result.Bytes / 1048576.0:F1} MiB, {s.Type}");
        if (result.F16Fallbacks.Count > 0)
            AnsiConsole.MarkupLineInterpolated(
                $"[yellow]{result.F16Fallbacks.Count} tensor(s) with rows not divisible by 32 written as f16[/], e.g. {result.F16Fallbacks[0]}");
        return 0;
    }
}
