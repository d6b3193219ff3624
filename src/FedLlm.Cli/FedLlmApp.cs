using FedLlm.Cli.Commands;
using FedLlm.Cli.Parsing;
using Spectre.Console.Cli;

namespace FedLlm.Cli;

/// <summary>A command of <c>fedllm</c>: its name (with its branch, e.g. "data stats"), type and one-line description.</summary>
public sealed record CommandEntry(string Path, Type Command, string Description, bool Hidden = false)
{
    /// <summary>The settings class its options are declared on.</summary>
    public Type Settings { get; } = SettingsOf(Command);

    internal Action<IConfigurator>? AddTo { get; init; }
    internal Action<IConfigurator<CommandSettings>>? AddToBranch { get; init; }

    static Type SettingsOf(Type command)
    {
        for (var t = command; t is not null; t = t.BaseType)
            if (t.IsGenericType && (t.GetGenericTypeDefinition() == typeof(Command<>) || t.GetGenericTypeDefinition() == typeof(AsyncCommand<>)))
                return t.GetGenericArguments()[0];
        return typeof(EmptyCommandSettings);
    }
}

/// <summary>
/// The <c>fedllm</c> application: one table of commands (registration, the strict argument check and docs/cli.md read
/// it), arguments checked before Spectre binds them (<see cref="ArgumentChecker"/>), and every failure printed by one
/// <see cref="ErrorPresenter"/>.
/// </summary>
public static class FedLlmApp
{
    /// <summary>Branches (commands that group sub-commands) and their descriptions.</summary>
    public static IReadOnlyDictionary<string, string> Branches { get; } = new Dictionary<string, string>
    {
        ["data"] = "Inspect data sets in their published schemas, and split them among clients.",
    };

    /// <summary>Every command, in the order of <c>fedllm --help</c>.</summary>
    public static IReadOnlyList<CommandEntry> Commands { get; } =
    [
        Top<TrainCommand>("train", "Fine-tune LoRA adapters on instruction data (sft) or preference pairs (dpo). With no arguments: the embedded default model and data."),
        Top<SimulateCommand>("simulate", "Federated fine-tuning of many clients in one process, compared with the local and central baselines. With no arguments: the embedded default."),
        Top<ServerCommand>("server", "Run a federation server: clients on other machines dial in with `fedllm client`. TLS by default."),
        Top<ClientCommand>("client", "Join a federation server and train on this machine's own data."),
        Top<AdminCommand>("admin", "Operate a running federation server: stop, abort-round, remove-client ID (with an admin certificate from `fedllm certs --admin`)."),
        Top<StatusCommand>("status", "Show a federation server's round, connected clients and last metrics."),
        Top<GenerateCommand>("generate", "Answer a prompt with a base model and an optional adapter."),
        Top<ServeCommand>("serve", "An OpenAI-compatible HTTP server (/v1/models, /v1/chat/completions, /v1/completions, streaming) for a base model and named adapters."),
        Top<ChatCommand>("chat", "Chat in the terminal: one user turn per line, replies streamed; against `fedllm serve` (--url) or in-process on --model/--adapter."),
        Top<MergeCommand>("merge", "Fold a PEFT adapter into its base model and write a plain Hugging Face checkpoint folder (fp32, bf16 or fp16)."),
        Top<ExportCommand>("export", "Write a model (+ optional adapter) as a GGUF file for llama.cpp (--type f32, f16 or q8_0), tokenizer included."),
        Top<EvalCommand>("eval", "Score a model (+ adapter) on a benchmark from local files: MMLU, BBH, GSM8K, FinGPT sentiment, BLEU/ROUGE-L, HumanEval, MBPP, MT-Bench… With no arguments: the embedded default on its held-out set."),
        Top<CertsCommand>("certs", "Create a CA, the server's and each client's certificate and token: a provisioning kit per participant (mutual TLS)."),
        InBranch<DataStatsCommand>("data", "stats", "Load a data set, partition it among clients (iid, dirichlet, shards, quantity) and show per-client statistics and a chart."),
        InBranch<DataSplitCommand>("data", "split", "Write one Alpaca JSONL file per client (client-N.jsonl), partitioned as `fedllm simulate` does: the clients' own data for a networked run."),
        Top<DocsCommand>("docs", "Print docs/cli.md, the reference of every command and option, from the command definitions.", hidden: true),
    ];

    static CommandEntry Top<T>(string name, string description, bool hidden = false) where T : class, ICommand =>
        new(name, typeof(T), description, hidden)
        {
            AddTo = c =>
            {
                var added = c.AddCommand<T>(name).WithDescription(description);
                if (hidden) added.IsHidden();
            },
        };

    static CommandEntry InBranch<T>(string branch, string name, string description) where T : class, ICommandLimiter<CommandSettings> =>
        new($"{branch} {name}", typeof(T), description) { AddToBranch = c => c.AddCommand<T>(name).WithDescription(description) };

    /// <summary>Builds the Spectre application; <paramref name="error"/> receives failures (default: standard error).</summary>
    public static CommandApp Create(TextWriter? error = null)
    {
        var app = new CommandApp();
        app.Configure(config =>
        {
            config.SetApplicationName("fedllm");
            config.UseStrictParsing();
            config.SetHelpProvider(new FedLlmHelpProvider(config.Settings));
            foreach (var entry in Commands.Where(e => e.AddTo is not null)) entry.AddTo!(config);
            foreach (var (branch, description) in Branches)
            {
                config.AddBranch(branch, b =>
                {
                    b.SetDescription(description);
                    foreach (var entry in Commands.Where(e => e.Path.StartsWith(branch + " ", StringComparison.Ordinal))) entry.AddToBranch!(b);
                });
            }
            config.SetExceptionHandler((exception, _) => ErrorPresenter.Present(exception, error ?? Console.Error));
        });
        return app;
    }

    /// <summary>Checks <paramref name="args"/> strictly, then runs the command; every failure goes through
    /// <see cref="ErrorPresenter"/> and gives a non-zero exit code.</summary>
    public static int Run(string[] args, TextWriter? error = null)
    {
        error ??= Console.Error;
        try
        {
            foreach (var warning in ArgumentChecker.Check(args, Commands)) error.WriteLine($"warning: {warning}");
        }
        catch (Exception e)
        {
            return ErrorPresenter.Present(e, error);
        }
        return Create(error).Run(args);
    }
}
