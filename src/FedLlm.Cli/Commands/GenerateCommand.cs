using FedLlm.Configuration;
using System.ComponentModel;
using FedLlm.Data;
using FedLlm.Data.Templates;
using FedLlm.Serving;
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
    [Description("The instruction (wrapped in --template), or the raw prompt with --template none; '-' reads it from standard input.")]
    public string? Prompt { get; init; }

    [CommandOption("--input <TEXT>")]
    [Description("The Alpaca 'input' (context) of the instruction, joined to it as training joined them.")]
    public string? Input { get; init; }

    [CommandOption("--chat")]
    [Description("Send the prompt as one user message through the model's chat template (or the conversation --template).")]
    public bool Chat { get; init; }

    [CommandOption("--adapter <DIR>")]
    [Description("A PEFT adapter folder (adapter_config.json + adapter_model.safetensors).")]
    public string? Adapter { get; init; }

    [CommandOption("--template <NAME>")]
    [OneOf("alpaca", "vicuna", "chatml", "llama-3", "model", "none", Aliases = ["llama3", "llama_3"])]
    [Description("Prompt template: alpaca, vicuna, chatml, llama-3, model (the tokenizer's chat template) or none for the raw prompt (default alpaca; with --chat: model if the tokenizer has a chat template, else alpaca).")]
    public string? Template { get; init; }

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
        string instruction = s.Prompt == "-" ? Console.In.ReadToEnd().TrimEnd('\n', '\r') : s.Prompt ?? EmbeddedDefault.SamplePrompt;
        if (!string.IsNullOrEmpty(s.Input)) instruction = new AlpacaRecord(instruction, s.Input, "").ToInstructionExample().Instruction;
        if (s.Chat && s.Template == "none") throw new ArgumentException("--chat needs a template; --template none sends the raw prompt");
        var tokenizer = TokenizerLoader.Load(modelDir);
        var chat = s.Chat ? new ChatPrompt(tokenizer, s.Template ?? ChatPrompt.DefaultTemplate(tokenizer)) : null;
        string template = s.Template ?? "alpaca";
        string prompt = chat is not null ? chat.Render([new ChatMessage(ChatMessage.User, instruction)])
            : template == "none" ? instruction : PromptTemplate.FromName(template).FormatPrompt(instruction);

        using var model = s.LoadModel(modelDir, device);
        if (s.Adapter is not null) AdapterIO.Load(s.Adapter, model);
        var options = new GenerationOptions
        {
            MaxNewTokens = s.MaxNewTokens, Temperature = s.Temperature, TopK = s.TopK, TopP = s.TopP, StopStrings = s.Stop, Seed = s.Seed,
        };
        var generator = new TextGenerator(model, tokenizer);
        var answer = chat is null ? generator.Generate(new[] { prompt }, options)[0]
            : Cut(tokenizer.Decode(generator.GenerateIds([chat.Encode([new ChatMessage(ChatMessage.User, instruction)])], options)[0].Select(i => (int)i)), s.Stop);
        AnsiConsole.MarkupLineInterpolated($"[grey]{prompt}[/]");
        Console.WriteLine(answer);
        return 0;
    }

    static string Cut(string text, IReadOnlyList<string> stops) => StopStringText.FirstStop(text, stops) is var at and >= 0 ? text[..at] : text;
}
