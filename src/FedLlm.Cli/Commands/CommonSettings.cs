using System.ComponentModel;
using FedLlm.Runtime;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

/// <summary>Options every command shares: where the model lives, which device and how many threads.</summary>
public class CommonSettings : CommandSettings
{
    [CommandOption("--model <DIR>")]
    [Description("Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer files). Default: the embedded default model.")]
    public string? Model { get; init; }

    [CommandOption("--device <DEVICE>")]
    [Description("cpu, cuda or cuda:N (CUDA needs a CUDA build of libtorch).")]
    [DefaultValue("cpu")]
    public string Device { get; init; } = "cpu";

    [CommandOption("--threads <N>")]
    [Description("Intra-op threads (default: all cores).")]
    public int? Threads { get; init; }

    [CommandOption("--seed <N>")]
    [DefaultValue(2023L)]
    public long Seed { get; init; } = 2023;

    public void ApplyRuntime() => TorchRuntime.ConfigureThreads(Threads);
}
