using System.ComponentModel;
using FedLlm.Defaults;
using FedLlm.Modeling;
using FedLlm.Serving;
using FedLlm.Serving.Http;
using FedLlm.Tokenization;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class ServeSettings : CommonSettings
{
    [CommandOption("--adapter <NAME=DIR>")]
    [Description("A PEFT adapter served as model NAME (repeatable), e.g. --adapter global=runs/x/fedavg/adapter. A bare DIR is served under its folder name.")]
    public string[] Adapter { get; init; } = [];

    [CommandOption("--model-name <NAME>")]
    [Description("The model name of the base itself. Default: config.json's _name_or_path, else the model folder's name.")]
    public string? ModelName { get; init; }

    [CommandOption("--host <ADDRESS>")]
    [Description("Address to listen on; keep the loopback default unless API keys guard the server.")]
    [DefaultValue("127.0.0.1")]
    public string Host { get; init; } = "127.0.0.1";

    [CommandOption("--port <PORT>")][Description("TCP port (0: any free one).")][DefaultValue(8000)] public int Port { get; init; } = 8000;

    [CommandOption("--api-key <KEY>")]
    [Description("A key clients must send as 'Authorization: Bearer KEY' (repeatable). Without keys the server is open.")]
    public string[] ApiKey { get; init; } = [];

    [CommandOption("--api-keys-file <PATH>")]
    [Description("A file of keys, one per line (# comments), added to --api-key.")]
    public string? ApiKeysFile { get; init; }

    [CommandOption("--max-batch-size <N>")][Description("Requests decoded together in one batch.")][DefaultValue(8)] public int MaxBatchSize { get; init; } = 8;

    [CommandOption("--max-queue <N>")][Description("Requests that may wait for a batch; more get HTTP 429.")][DefaultValue(32)] public int MaxQueue { get; init; } = 32;

    [CommandOption("--max-tokens <N>")][Description("max_tokens of a request that sets none.")][DefaultValue(256)] public int MaxTokens { get; init; } = 256;

    [CommandOption("--template <NAME>")]
    [Description("Chat prompt format: model (tokenizer_config.json's chat_template), alpaca, vicuna, chatml or llama-3. Default: model if the tokenizer has a chat template, else alpaca.")]
    public string? Template { get; init; }

    /// <summary>--adapter values as (name, folder) pairs; a bare folder is named after itself.</summary>
    public static IReadOnlyList<(string Name, string Directory)> ParseAdapters(IEnumerable<string> values) => values.Select(v =>
    {
        int eq = v.IndexOf('=');
        if (eq == 0) throw new ArgumentException($"--adapter '{v}': the name before '=' is empty");
        return eq > 0 ? (v[..eq], v[(eq + 1)..]) : (Path.GetFileName(Path.GetFullPath(v).TrimEnd(Path.DirectorySeparatorChar)), v);
    }).ToList();
}

/// <summary><c>fedllm serve</c>: an OpenAI-compatible HTTP server for a base model and any number of adapters.</summary>
public sealed class ServeCommand : AsyncCommand<ServeSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, ServeSettings s, CancellationToken cancellationToken)
    {
        s.ApplyRuntime();
        var device = Runtime.TorchRuntime.ParseDevice(s.Device);
        string modelDir = s.Model ?? EmbeddedDefault.Ensure(m => AnsiConsole.MarkupLineInterpolated($"[grey]{m}[/]")).ModelDirectory;
        var keys = s.ApiKey.Concat(s.ApiKeysFile is null ? [] : ApiKeys.ReadFile(s.ApiKeysFile)).ToList();
        var adapters = ServeSettings.ParseAdapters(s.Adapter);
        var engineOptions = new EngineOptions { MaxBatchSize = s.MaxBatchSize, MaxQueue = s.MaxQueue };
        var serverOptions = new OpenAiServerOptions { Host = s.Host, Port = s.Port, ApiKeys = new ApiKeys(keys), DefaultMaxTokens = s.MaxTokens };
        engineOptions.Validate();
        serverOptions.Validate();

        var tokenizer = TokenizerLoader.Load(modelDir);
        using var session = new ServingSession(s.LoadModel(modelDir, device), tokenizer, s.ModelName ?? (s.Model is null ? "fedllm-default" : ModelName.Of(modelDir)), adapters, s.Template, engineOptions);
        await using var server = await OpenAiServer.StartAsync(session.Served, session.Engine, serverOptions, cancellationToken);
        AnsiConsole.MarkupLineInterpolated($"[bold]fedllm serve[/] on [cyan]{server.BaseAddress}v1[/]: models {string.Join(", ", session.Served.Names)}; chat template {session.Served.Chat.TemplateName}; batches of ≤ {s.MaxBatchSize}, queue {s.MaxQueue}; {(keys.Count > 0 ? $"{keys.Count} API key(s)" : "no API key (open)")}");
        if (keys.Count == 0 && s.Host is not ("127.0.0.1" or "localhost" or "::1"))
            AnsiConsole.MarkupLine("[yellow]warning:[/] listening beyond this machine without an API key; anyone who reaches the port can use the model");
        try { await Task.Delay(Timeout.Infinite, cancellationToken); }
        catch (OperationCanceledException) { }
        return 0;
    }
}
