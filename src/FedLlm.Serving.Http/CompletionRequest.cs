using System.Text.Json;
using System.Text.Json.Nodes;
using FedLlm.Data.Templates;

namespace FedLlm.Serving.Http;

/// <summary>A request body the server cannot serve; <see cref="Param"/> names the offending field.</summary>
public sealed class RequestException(int status, string message, string? param = null, string code = "invalid_request_error") : Exception(message)
{
    /// <summary>The HTTP status to answer with (400 for a malformed body).</summary>
    public int Status { get; } = status;
    /// <summary>The request field at fault (OpenAI's <c>error.param</c>, e.g. "temperature" or "messages[2].content"),
    /// or null when the body as a whole is at fault.</summary>
    public string? Param { get; } = param;
    /// <summary>OpenAI's <c>error.code</c>; "invalid_request_error" unless the caller says otherwise.</summary>
    public string Code { get; } = code;
}

/// <summary>
/// The fields of <c>/v1/chat/completions</c> and <c>/v1/completions</c> that FedLlm honours, read from the JSON body.
/// Fields it does not know are ignored, as OpenAI clients send many optional ones; fields it knows are checked.
/// </summary>
public sealed record CompletionRequest
{
    /// <summary>The model name the client asked for (<c>model</c>, required); the server checks it against the model it
    /// serves.</summary>
    public required string Model { get; init; }
    /// <summary>The conversation of a chat completion, in order; null for a text completion. The "developer" role is
    /// read as "system".</summary>
    public IReadOnlyList<ChatMessage>? Messages { get; init; }
    /// <summary>The raw prompt of a text completion (one string; batches are refused); null for a chat
    /// completion.</summary>
    public string? Prompt { get; init; }
    /// <summary>The most tokens to generate (<c>max_completion_tokens</c>, else <c>max_tokens</c>); positive, or null
    /// for the server's default.</summary>
    public int? MaxTokens { get; init; }
    /// <summary>Sampling temperature in [0, 2]; 0 means greedy decoding. Defaults to 1 as in OpenAI's API.</summary>
    public double Temperature { get; init; } = 1.0;   // OpenAI's default
    /// <summary>Nucleus sampling mass in (0, 1]: sample only from the smallest token set whose probability reaches it.
    /// 1 keeps every token.</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>Stop sequences: generation ends before the first one produced, which is not returned. Empty when
    /// none.</summary>
    public IReadOnlyList<string> Stop { get; init; } = Array.Empty<string>();
    /// <summary>True to answer with server-sent events, one chunk per generated piece of text.</summary>
    public bool Stream { get; init; }
    /// <summary>True when <c>stream_options.include_usage</c> asks for a final streamed chunk carrying token
    /// counts.</summary>
    public bool IncludeUsage { get; init; }
    /// <summary>Seed of the sampler, for reproducible sampling; null draws one.</summary>
    public long? Seed { get; init; }

    /// <summary>Parses a chat (<paramref name="chat"/> true) or text completion body.</summary>
    /// <exception cref="RequestException">Malformed JSON or a field of the wrong type or range (400).</exception>
    public static CompletionRequest Parse(string body, bool chat)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(body); }
        catch (JsonException e) { throw new RequestException(400, $"the request body is not valid JSON: {e.Message}"); }
        if (root is not JsonObject o) throw new RequestException(400, "the request body must be a JSON object");
        try
        {
            var model = Text(o, "model") ?? throw new RequestException(400, "'model' is required", "model");
            int? n = Integer(o, "n");
            if (n is not (null or 1)) throw new RequestException(400, "only n = 1 is supported", "n");
            int? maxTokens = Integer(o, "max_completion_tokens") ?? Integer(o, "max_tokens");
            if (maxTokens is <= 0) throw new RequestException(400, "max_tokens must be positive", "max_tokens");
            double temperature = Number(o, "temperature") ?? 1.0;
            if (temperature is < 0 or > 2) throw new RequestException(400, "temperature must be in [0, 2]", "temperature");
            double topP = Number(o, "top_p") ?? 1.0;
            if (topP is <= 0 or > 1) throw new RequestException(400, "top_p must be in (0, 1]", "top_p");
            var request = new CompletionRequest
            {
                Model = model,
                MaxTokens = maxTokens,
                Temperature = temperature,
                TopP = topP,
                Stop = Stops(o),
                Stream = o["stream"] is JsonValue s && s.GetValue<bool>(),
                IncludeUsage = o["stream_options"] is JsonObject so && so["include_usage"] is JsonValue iu && iu.GetValue<bool>(),
                Seed = o["seed"] is JsonValue seed ? seed.GetValue<long>() : null,
            };
            return chat ? request with { Messages = ReadMessages(o) } : request with { Prompt = PromptText(o) };
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new RequestException(400, $"a field has the wrong type: {e.Message}");
        }
    }

    static string? Text(JsonObject o, string name) => o[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        _ => throw new RequestException(400, $"'{name}' must be a string", name),
    };

    static int? Integer(JsonObject o, string name) => o[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<int>(out var i) => i,
        _ => throw new RequestException(400, $"'{name}' must be an integer", name),
    };

    static double? Number(JsonObject o, string name) => o[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<double>(out var d) => d,
        _ => throw new RequestException(400, $"'{name}' must be a number", name),
    };

    static IReadOnlyList<string> Stops(JsonObject o) => o["stop"] switch
    {
        null => Array.Empty<string>(),
        JsonValue v when v.TryGetValue<string>(out var s) => s.Length == 0 ? Array.Empty<string>() : new[] { s },
        JsonArray a => a.Select((n, i) => n is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0 ? s
            : throw new RequestException(400, $"stop[{i}] must be a non-empty string", "stop")).ToList(),
        _ => throw new RequestException(400, "'stop' must be a string or an array of strings", "stop"),
    };

    static string PromptText(JsonObject o) => o["prompt"] switch
    {
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonArray { Count: 1 } a when a[0] is JsonValue v && v.TryGetValue<string>(out var s) => s,
        JsonArray => throw new RequestException(400, "'prompt' must be one string (batches of prompts are not supported)", "prompt"),
        null => throw new RequestException(400, "'prompt' is required", "prompt"),
        _ => throw new RequestException(400, "'prompt' must be a string", "prompt"),
    };

    static IReadOnlyList<ChatMessage> ReadMessages(JsonObject o)
    {
        if (o["messages"] is not JsonArray array || array.Count == 0)
            throw new RequestException(400, "'messages' must be a non-empty array", "messages");
        var messages = new List<ChatMessage>();
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonObject m) throw new RequestException(400, $"messages[{i}] must be an object", $"messages[{i}]");
            string role = Text(m, "role") ?? throw new RequestException(400, $"messages[{i}].role is required", $"messages[{i}].role");
            if (role == "developer") role = ChatMessage.System; // the newer name of the system role
            messages.Add(new ChatMessage(role, Content(m["content"], i)));
        }
        return messages;
    }

    /// <summary>Content as a string, or as an array of parts of which only text parts are understood.</summary>
    static string Content(JsonNode? content, int index) => content switch
    {
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        null => "",
        JsonArray parts => string.Concat(parts.Select((p, j) => p is JsonObject part && part["type"]?.GetValue<string>() == "text"
            ? part["text"]?.GetValue<string>() ?? ""
            : throw new RequestException(400, $"messages[{index}].content[{j}]: only text parts are supported", $"messages[{index}].content"))),
        _ => throw new RequestException(400, $"messages[{index}].content must be a string or an array of text parts", $"messages[{index}].content"),
    };
}
