using FedLlm.Configuration;
using System.ComponentModel;
using FedLlm.Data;
using FedLlm.Defaults;
using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Runtime;
using FedLlm.Tokenization;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace FedLlm.Cli.Commands;

public sealed class GenerateSettings : CommonSettings
{
    [CommandArgument(0, "[PROMPT]")]
    [Description("The instruction (wrapped in --template), or the raw prompt with --template none.")]
    public string? Prompt { get; init; }

    [CommandOption("--adapter <DIR>")]
    [Description("A PEFT adapter folder (adapter_config.json + adapter_model.safetensors).")]
    public string? Adapter { get; init; }

    [CommandOption("--template <NAME>")]
    [OneOf("alpaca", "vicuna", "chatml", "llama-3", "none", Aliases = ["llama3", "llama_3"])]
    [Description("Prompt template: alpaca, vicuna, chatml, llama-3, or none for the raw prompt.")]
    [DefaultValue("alpaca")]
    public string Template { get; init; } = "alpaca";

    [CommandOption("--max-new-tokens <N>")][Check(ValueRule.Positive)][Description("Most tokens to generate.")][DefaultValue(128)] public int MaxNewTokens { get; init; } = 128;
    [CommandOption("--temperature <X>")][Check(ValueRule.NonNegative)][Description("Sampling temperature, finite and ≥ 0 (0 = greedy).")][DefaultValue(0.0)] public double Temperature { get; init; }
    [CommandOption("--top-k <N>")][Check(ValueRule.NonNegative)][Description("Sample among the k most likely tokens (0 = all).")][DefaultValue(0)] public int TopK { get; init; }
    [CommandOption("--top-p <X>")][Check(ValueRule.Probability)][Description("Nucleus sampling: the smallest set of tokens with this much probability, in [0, 1].")][DefaultValue(1.0)] public double TopP { get; init; } = 1.0;

    [CommandOption("--stop <TEXT>")]
    [Description("Stop string (repeatable).")]
    public string[] Stop { get; init; } = Array.Empty<string>();
}

/// <summary><c>fedllm generate</c>: one answer from a base model and an optional adapter.</summary>
public sealed class GenerateCommand : Command<GenerateSettings>
{
    public override int Execute(CommandContext context, GenerateSettings s, CancellationToken cancellationToken)
    {
        TorchRuntime.ConfigureThreads(s.Threads);
        var device = TorchRuntime.ParseDevice(s.Device);
        string modelDir = s.Model ?? EmbeddedDefault.Ensure(m => AnsiConsole.MarkupLineInterpolated($"[grey]{m}[/]")).ModelDirectory;
        string instruction = s.Prompt ?? EmbeddedDefault.SamplePrompt;
        string prompt = s.Template == "none" ? instruction : PromptTemplate.FromName(s.Template).FormatPrompt(instruction);

        var tokenizer = TokenizerLoader.Load(modelDir);
        using var model = s.LoadModel(modelDir, device);
        if (s.Adapter is not null) AdapterIO.Load(s.Adapter, model);
        var options = new GenerationOptions
        {
            MaxNewTokens = s.MaxNewTokens, Temperature = s.Temperature, TopK = s.TopK, TopP = s.TopP, StopStrings = s.Stop, Seed = s.Seed,
        };
        var answer = new TextGenerator(model, tokenizer).Generate(new[] { prompt }, options)[0];
        AnsiConsole.MarkupLineInterpolated($"[grey]{prompt}[/]");
        Console.WriteLine(answer);
        return 0;
    }
}
