using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using FedLlm.Data.Templates.Jinja;
using FedLlm.Generation;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace FedLlm.Serving.Http;

/// <summary>Where and how the OpenAI-compatible server listens.</summary>
public sealed record OpenAiServerOptions
{
    /// <summary>Address to bind: loopback by default, so nothing outside the machine reaches an unauthenticated server.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (see <see cref="OpenAiServer.BaseAddress"/>).</summary>
    public int Port { get; init; } = 8000;

    /// <summary>The bearer keys requests must present; <see cref="Http.ApiKeys.None"/> (the default) leaves the server
    /// open.</summary>
    public ApiKeys ApiKeys { get; init; } = ApiKeys.None;

    /// <summary>max_tokens of a request that gives none (cut to what the context leaves).</summary>
    public int DefaultMaxTokens { get; init; } = 256;

    /// <summary>Checks the options before the server starts.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The port is outside 0..65535, or the default max tokens is not
    /// positive.</exception>
    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new ArgumentOutOfRangeException(nameof(Port), Port, "port must be in 0..65535");
        if (DefaultMaxTokens <= 0) throw new ArgumentOutOfRangeException(nameof(DefaultMaxTokens), DefaultMaxTokens, "max-tokens must be positive");
    }
}

/// <summary>
/// An OpenAI-compatible HTTP server over an <see cref="InferenceEngine"/>: <c>GET /v1/models</c>,
/// <c>POST /v1/chat/completions</c> and <c>POST /v1/completions</c>, with server-sent-event streaming
/// (<c>data: {chunk}</c> lines, then <c>data: [DONE]</c>), stop strings, temperature, top_p, max_tokens and usage.
/// The request's <c>model</c> picks the base model or one of its adapters.
/// </summary>
/// <remarks>Errors use OpenAI's body, <c>{"error": {"message", "type", "param", "code"}}</c>: 400 for a bad field,
/// 401 without a valid key, 404 for an unknown model, 429 when the queue is full.</remarks>
public sealed class OpenAiServer : IAsyncDisposable
{
    private readonly WebApplication app;
    private readonly ServedModel served;
    private readonly InferenceEngine engine;
    private readonly OpenAiServerOptions options;
    private readonly long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    OpenAiServer(WebApplication app, ServedModel served, InferenceEngine engine, OpenAiServerOptions options)
    {
        this.app = app;
        this.served = served;
        this.engine = engine;
        this.options = options;
    }

    /// <summary>The address clients use, e.g. http://127.0.0.1:8000/ (the real port when 0 was asked for).</summary>
    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>Binds and starts serving; returns once the port is open.</summary>
    public static async Task<OpenAiServer> StartAsync(ServedModel served, InferenceEngine engine, OpenAiServerOptions options,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(served);
        ArgumentNullException.ThrowIfNull(engine);
        options.Validate();
        var address = options.Host == "localhost" ? IPAddress.Loopback
            : IPAddress.TryParse(options.Host, out var parsed) ? parsed
            : throw new ArgumentException($"--host '{options.Host}' is not an IP address (or localhost)");
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(address, options.Port));
        var app = builder.Build();
        var server = new OpenAiServer(app, served, engine, options);
        server.Map();
        await app.StartAsync(cancellationToken);
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.BaseAddress = new Uri(bound.EndsWith('/') ? bound : bound + "/");
        return server;
    }

    /// <summary>Completes when the server stops (<paramref name="cancellationToken"/> stops it).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => app.WaitForShutdownAsync(cancellationToken);

    /// <summary>Stops the server, finishing requests in flight, and frees the host.</summary>
    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }

    void Map()
    {
        app.Use(async (context, next) =>
        {
            if (!options.ApiKeys.Accepts(context.Request.Headers.Authorization))
            {
                context.Response.Headers.WWWAuthenticate = "Bearer";
                await Error(context, 401, "Incorrect or missing API key: send 'Authorization: Bearer KEY'.", code: "invalid_api_key", type: "authentication_error");
                return;
            }
            await next(context);
        });
        app.MapGet("/v1/models", () => Results.Json(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(served.Names.Select(n => (JsonNode)new JsonObject
            {
                ["id"] = n, ["object"] = "model", ["created"] = created, ["owned_by"] = "fedllm",
            }).ToArray()),
        }));
        app.MapPost("/v1/chat/completions", context => Complete(context, chat: true));
        app.MapPost("/v1/completions", context => Complete(context, chat: false));
    }

    async Task Complete(HttpContext context, bool chat)
    {
        CompletionRequest request;
        SequenceRequest sequence;
        try
        {
            using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
            request = CompletionRequest.Parse(await reader.ReadToEndAsync(context.RequestAborted), chat);
            sequence = Prepare(request);
        }
        catch (RequestException e)
        {
            await Error(context, e.Status, e.Message, e.Param, e.Status == 404 ? "model_not_found" : null);
            return;
        }
        var observer = new ChannelObserver(context.RequestAborted);
        if (!engine.TrySubmit(sequence, observer))
        {
            context.Response.Headers.RetryAfter = "1";
            await Error(context, 429, "The server's queue is full; retry later.", code: "rate_limit_exceeded", type: "rate_limit_error");
            return;
        }
        string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        int promptTokens = sequence.PromptIds.Length;
        if (request.Stream) await Stream(context, request, observer, id, now, promptTokens, chat);
        else await Whole(context, request, observer, id, now, promptTokens, chat);
    }

    SequenceRequest Prepare(CompletionRequest request)
    {
        int slot = served.Resolve(request.Model)
            ?? throw new RequestException(404, $"The model '{request.Model}' does not exist; this server offers: {string.Join(", ", served.Names)}.", "model");
        long[] prompt;
        try
        {
            prompt = request.Messages is { } messages ? served.Chat.Encode(messages)
                : served.Tokenizer.Encode(request.Prompt!, addSpecialTokens: true).Select(i => (long)i).ToArray();
        }
        catch (ChatFormatException e) { throw new RequestException(400, e.Message, "messages"); }
        catch (JinjaException e) { throw new RequestException(400, $"the model's chat template failed on these messages: {e.Message}", "messages"); }
        if (prompt.Length == 0) throw new RequestException(400, "the prompt encodes to no tokens", request.Messages is null ? "prompt" : "messages");
        int room = served.ContextLength - prompt.Length;
        if (room <= 0)
            throw new RequestException(400, $"the prompt has {prompt.Length} tokens; this model's context holds {served.ContextLength}", request.Messages is null ? "prompt" : "messages");
        if (request.MaxTokens > room)
            throw new RequestException(400, $"max_tokens {request.MaxTokens} + the prompt's {prompt.Length} tokens exceed this model's context of {served.ContextLength}", "max_tokens");
        var generation = new GenerationOptions
        {
            MaxNewTokens = request.MaxTokens ?? Math.Min(options.DefaultMaxTokens, room),
            Temperature = request.Temperature,
            TopP = request.TopP,
            StopStrings = request.Stop,
            Seed = request.Seed ?? Random.Shared.NextInt64(),
        };
        return new SequenceRequest(prompt, slot, generation);
    }

    async Task Whole(HttpContext context, CompletionRequest request, ChannelObserver observer, string id, long now, int promptTokens, bool chat)
    {
        var text = new StringBuilder();
        SequenceEvent? end = null;
        await foreach (var e in observer.Events.ReadAllAsync(context.RequestAborted))
        {
            if (e.Error is not null) { await Error(context, 500, $"generation failed: {e.Error.Message}", type: "server_error"); return; }
            if (e.Text is not null) text.Append(e.Text);
            if (e.Finish is not null) end = e;
        }
        if (end is null) return;
        var choice = chat
            ? new JsonObject { ["index"] = 0, ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = text.ToString() }, ["logprobs"] = null, ["finish_reason"] = Reason(end.Finish!.Value) }
            : new JsonObject { ["index"] = 0, ["text"] = text.ToString(), ["logprobs"] = null, ["finish_reason"] = Reason(end.Finish!.Value) };
        await Json(context, 200, new JsonObject
        {
            ["id"] = id,
            ["object"] = chat ? "chat.completion" : "text_completion",
            ["created"] = now,
            ["model"] = request.Model,
            ["choices"] = new JsonArray(choice),
            ["usage"] = Usage(promptTokens, end.CompletionTokens),
        });
    }

    async Task Stream(HttpContext context, CompletionRequest request, ChannelObserver observer, string id, long now, int promptTokens, bool chat)
    {
        context.Response.StatusCode = 200;
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        JsonObject Chunk(JsonObject? delta, string? text, string? finish) => new()
        {
            ["id"] = id,
            ["object"] = chat ? "chat.completion.chunk" : "text_completion",
            ["created"] = now,
            ["model"] = request.Model,
            ["choices"] = new JsonArray(chat
                ? new JsonObject { ["index"] = 0, ["delta"] = delta ?? new JsonObject(), ["logprobs"] = null, ["finish_reason"] = finish }
                : new JsonObject { ["index"] = 0, ["text"] = text ?? "", ["logprobs"] = null, ["finish_reason"] = finish }),
        };
        try
        {
            if (chat) await Event(context, Chunk(new JsonObject { ["role"] = "assistant", ["content"] = "" }, null, null));
            await foreach (var e in observer.Events.ReadAllAsync(context.RequestAborted))
            {
                if (e.Error is not null)
                {
                    await Event(context, new JsonObject { ["error"] = new JsonObject { ["message"] = $"generation failed: {e.Error.Message}", ["type"] = "server_error" } });
                    break;
                }
                if (e.Text is { Length: > 0 } text) await Event(context, Chunk(new JsonObject { ["content"] = text }, text, null));
                if (e.Finish is { } finish)
                {
                    await Event(context, Chunk(new JsonObject(), "", Reason(finish)));
                    if (request.IncludeUsage)
                        await Event(context, new JsonObject
                        {
                            ["id"] = id, ["object"] = chat ? "chat.completion.chunk" : "text_completion", ["created"] = now, ["model"] = request.Model,
                            ["choices"] = new JsonArray(), ["usage"] = Usage(promptTokens, e.CompletionTokens),
                        });
                }
            }
            await context.Response.WriteAsync("data: [DONE]\n\n", context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested) { } // the client went away
    }

    static string Reason(FinishReason reason) => reason == FinishReason.Length ? "length" : "stop";

    static JsonObject Usage(int prompt, int completion) => new()
    {
        ["prompt_tokens"] = prompt, ["completion_tokens"] = completion, ["total_tokens"] = prompt + completion,
    };

    static async Task Event(HttpContext context, JsonObject data)
    {
        await context.Response.WriteAsync("data: " + data.ToJsonString() + "\n\n", context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    static Task Error(HttpContext context, int status, string message, string? param = null, string? code = null, string type = "invalid_request_error") =>
        Json(context, status, new JsonObject
        {
            ["error"] = new JsonObject { ["message"] = message, ["type"] = type, ["param"] = param, ["code"] = code },
        });

    static async Task Json(HttpContext context, int status, JsonObject body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString(), context.RequestAborted);
    }
}
