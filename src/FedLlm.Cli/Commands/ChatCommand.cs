using System.ClientModel;
using System.ClientModel.Primitives;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using FedLlm.Defaults;
using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Serving;
using FedLlm.Tokenization;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;
using Spectre.Console;
using Spectre.Console.Cli;
using Message = FedLlm.Data.Templates.ChatMessage;

namespace FedLlm.Cli.Commands;

public sealed class ChatSettings : CommonSettings
{
    [CommandOption("--url <URL>")]
    [Description("An OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (`fedllm serve`). Without it: in-process on --model and --adapter.")]
    public string? Url { get; init; }

    [CommandOption("--api-key <KEY>")]
    [Description("The server's API key (default: the FEDLLM_API_KEY environment variable).")]
    public string? ApiKey { get; init; }

    [CommandOption("--model-name <NAME>")]
    [Description("Which served model to talk to (base or adapter name). Default: the adapter in-process, else the server's first model.")]
    public string? ModelName { get; init; }

    [CommandOption("--adapter <DIR>")]
    [Description("In-process only: a PEFT adapter folder applied to --model.")]
    public string? Adapter { get; init; }

    [CommandOption("--template <NAME>")]
    [Description("In-process only: model, alpaca, vicuna, chatml or llama-3 (default: model if the tokenizer has a chat template, else alpaca).")]
    public string? Template { get; init; }

    [CommandOption("--system <TEXT>")][Description("A system message that opens the conversation.")] public string? System { get; init; }
    [CommandOption("--max-tokens <N>")][Description("Longest reply, in tokens.")][DefaultValue(256)] public int MaxTokens { get; init; } = 256;
    [CommandOption("--temperature <X>")][Description("0 = greedy.")][DefaultValue(0.0)] public double Temperature { get; init; }
    [CommandOption("--top-p <X>")][Description("Nucleus sampling mass (1 = off).")][DefaultValue(1.0)] public double TopP { get; init; } = 1.0;
}

/// <summary>
/// <c>fedllm chat</c>: reads one user turn per stdin line and streams each reply, keeping the conversation; "/reset"
/// starts over. Talks to a server over HTTP, or decodes in-process through the same engine <c>fedllm serve</c> uses.
/// </summary>
public sealed class ChatCommand : AsyncCommand<ChatSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, ChatSettings s, CancellationToken cancellationToken)
    {
        if (s.MaxTokens <= 0) throw new ArgumentException("--max-tokens must be positive");
        if (s.Url is not null && (s.Adapter is not null || s.Template is not null || s.Model is not null))
            throw new ArgumentException("--adapter, --template and --model choose an in-process model; with --url the server has chosen them");
        using IChatBackend backend = s.Url is null ? InProcess(s) : await Remote(s, cancellationToken);
        bool interactive = !Console.IsInputRedirected;
        if (interactive) AnsiConsole.MarkupLineInterpolated($"[grey]chatting with {backend.Name}; an empty line or end of input quits, /reset starts over[/]");
        var history = new List<Message>();
        if (s.System is not null) history.Add(new Message(Message.System, s.System));
        while (true)
        {
            if (interactive) AnsiConsole.Markup("[bold]> [/]");
            string? line = await Console.In.ReadLineAsync(cancellationToken);
            if (line is null || (interactive && line.Length == 0)) break;
            if (line.Length == 0) continue;
            if (line.Trim() == "/reset") { history.RemoveAll(m => m.Role != Message.System); continue; }
            history.Add(new Message(Message.User, line));
            var reply = new System.Text.StringBuilder();
            await foreach (var piece in backend.StreamAsync(history, cancellationToken))
            {
                Console.Write(piece);
                reply.Append(piece);
            }
            Console.WriteLine();
            history.Add(new Message(Message.Assistant, reply.ToString()));
        }
        return 0;
    }

    static InProcessBackend InProcess(ChatSettings s)
    {
        s.ApplyRuntime();
        string modelDir = s.Model ?? EmbeddedDefault.Ensure(m => AnsiConsole.MarkupLineInterpolated($"[grey]{m}[/]")).ModelDirectory;
        var tokenizer = TokenizerLoader.Load(modelDir);
        var adapters = s.Adapter is null ? [] : ServeSettings.ParseAdapters([s.Adapter]);
        var session = new ServingSession(s.LoadModel(modelDir, Runtime.TorchRuntime.ParseDevice(s.Device)), tokenizer, ModelName.Of(modelDir),
            adapters, s.Template, new EngineOptions { MaxBatchSize = 1 });
        string name = s.ModelName ?? (adapters.Count > 0 ? adapters[0].Name : session.Served.BaseName);
        return new InProcessBackend(session, name, Options(s));
    }

    static GenerationOptions Options(ChatSettings s) => new()
    {
        MaxNewTokens = s.MaxTokens, Temperature = s.Temperature, TopP = s.TopP, Seed = s.Seed,
    };

    static async Task<RemoteBackend> Remote(ChatSettings s, CancellationToken cancellationToken)
    {
        if (!Uri.TryCreate(s.Url, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https"))
            throw new ArgumentException($"--url '{s.Url}' is not an http(s) address, e.g. http://127.0.0.1:8000/v1");
        var credential = new ApiKeyCredential(s.ApiKey ?? Environment.GetEnvironmentVariable("FEDLLM_API_KEY") ?? "none");
        var options = new OpenAIClientOptions { Endpoint = endpoint, RetryPolicy = new ClientRetryPolicy(maxRetries: 0) };
        string name = s.ModelName ?? (await new OpenAIModelClient(credential, options).GetModelsAsync(cancellationToken)).Value.FirstOrDefault()?.Id
            ?? throw new ArgumentException($"{s.Url} offers no model");
        return new RemoteBackend(new ChatClient(name, credential, options), name, s);
    }

    interface IChatBackend : IDisposable
    {
        string Name { get; }
        IAsyncEnumerable<string> StreamAsync(IReadOnlyList<Message> history, CancellationToken cancellationToken);
    }

    sealed class InProcessBackend(ServingSession session, string name, GenerationOptions options) : IChatBackend
    {
        public string Name => name;

        public async IAsyncEnumerable<string> StreamAsync(IReadOnlyList<Message> history, [EnumeratorCancellation] CancellationToken cancellationToken)
        {
            var request = session.Request(name, session.Served.Chat.Encode(history), options);
            await foreach (var e in session.StreamAsync(request, cancellationToken))
                if (e.Text is { } text) yield return text;
        }

        public void Dispose() => session.Dispose();
    }

    sealed class RemoteBackend(ChatClient client, string name, ChatSettings s) : IChatBackend
    {
        public string Name => name;

        public async IAsyncEnumerable<string> StreamAsync(IReadOnlyList<Message> history, [EnumeratorCancellation] CancellationToken cancellationToken)
        {
            var messages = history.Select(m => m.Role switch
            {
                Message.System => (OpenAI.Chat.ChatMessage)new SystemChatMessage(m.Content),
                Message.Assistant => new AssistantChatMessage(m.Content),
                _ => new UserChatMessage(m.Content),
            }).ToList();
            var options = new ChatCompletionOptions { Temperature = (float)s.Temperature, TopP = (float)s.TopP, MaxOutputTokenCount = s.MaxTokens };
            await foreach (var update in client.CompleteChatStreamingAsync(messages, options, cancellationToken))
                foreach (var part in update.ContentUpdate)
                    if (part.Text is { Length: > 0 } text) yield return text;
        }

        public void Dispose() { }
    }
}
