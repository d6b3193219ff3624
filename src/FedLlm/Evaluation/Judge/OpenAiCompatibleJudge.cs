using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace FedLlm.Evaluation.Judge;

/// <summary>
/// A judge behind any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp server, Ollama…):
/// <c>POST {base_url}/chat/completions</c> with <c>{model, messages: [system, user], temperature: 0, max_tokens}</c>,
/// the reply read from <c>choices[0].message.content</c>.
/// </summary>
/// <remarks>
/// A 429, a 5xx, a timeout or a dropped connection is retried up to <see cref="JudgeConfig.MaxRetries"/> times, waiting
/// Retry-After if the server sends it, else <see cref="JudgeConfig.RetryDelaySeconds"/> doubling each time. Any other
/// status (401, 404…) or a reply without a message fails at once with the status and the start of the body, because
/// retrying cannot fix it. Unlike FastChat, which writes "$ERROR$" and scores −1 after its retries, a judge that never
/// answers stops the evaluation: silently dropped judgments would bias the mean.
/// </remarks>
public sealed class OpenAiCompatibleJudge : IJudgeModel, IDisposable
{
    private static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(60);

    private readonly JudgeConfig _config;
    private readonly HttpClient _http;
    private readonly Uri _endpoint;

    /// <exception cref="InvalidDataException">The config is invalid or its key variable is not set.</exception>
    public OpenAiCompatibleJudge(JudgeConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        _config = config;
        _endpoint = new Uri(config.BaseUrl!.TrimEnd('/') + "/chat/completions");
        _http = new HttpClient { Timeout = TimeSpan.FromSeconds(config.TimeoutSeconds) };
        if (config.ResolveApiKey() is { } key) _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
    }

    /// <inheritdoc/>
    public string Name => _config.Model!;

    /// <summary>Requests sent so far, retries included.</summary>
    public int Requests => _requests;

    private int _requests;

    /// <exception cref="HttpRequestException">The endpoint refused the request, gave a malformed reply, or kept failing after every retry.</exception>
    public string Complete(string systemPrompt, string userPrompt, CancellationToken cancellationToken = default)
    {
        var body = JsonLines.Object(json =>
        {
            json.WriteString("model", _config.Model);
            json.WriteStartArray("messages");
            foreach (var (role, content) in new[] { ("system", systemPrompt), ("user", userPrompt) })
            {
                json.WriteStartObject();
                json.WriteString("role", role);
                json.WriteString("content", content);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteNumber("temperature", 0);
            json.WriteNumber("max_tokens", _config.MaxTokens);
        });

        string lastProblem = "";
        for (var attempt = 0; ; attempt++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            TimeSpan? retryAfter = null;
            string? reply = null;
            try
            {
                Interlocked.Increment(ref _requests);
                using var request = new HttpRequestMessage(HttpMethod.Post, _endpoint) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                using var response = _http.Send(request, cancellationToken);
                var text = ReadBody(response, cancellationToken);
                if (response.IsSuccessStatusCode)
                {
                    reply = text;
                }
                else
                {
                    lastProblem = $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}: {Snippet(text)}";
                    if (!IsTransient(response.StatusCode))
                        throw new HttpRequestException($"Judge endpoint {_endpoint} refused the request with {lastProblem}", null, response.StatusCode);
                    retryAfter = response.Headers.RetryAfter?.Delta
                        ?? (response.Headers.RetryAfter?.Date is { } date ? date - DateTimeOffset.UtcNow : null);
                }
            }
            catch (TaskCanceledException e) when (!cancellationToken.IsCancellationRequested)
            {
                lastProblem = $"no answer within timeout_seconds={_config.TimeoutSeconds} ({e.Message})";
            }
            catch (HttpRequestException e) when (e.StatusCode is null)
            {
                lastProblem = $"connection failed: {e.Message}";
            }

            // Parsed outside the try: a malformed 200 reply is the server's bug, not a transient failure to retry.
            if (reply is not null) return ParseContent(reply);
            if (attempt >= _config.MaxRetries)
                throw new HttpRequestException($"Judge endpoint {_endpoint} failed after {attempt + 1} attempts; last: {lastProblem}");
            var delay = retryAfter ?? TimeSpan.FromSeconds(_config.RetryDelaySeconds * Math.Pow(2, attempt));
            if (delay > MaxDelay) delay = MaxDelay;
            if (delay > TimeSpan.Zero) Task.Delay(delay, cancellationToken).Wait(cancellationToken);
        }
    }

    /// <summary>Disposes the HTTP client when this judge created it.</summary>
    public void Dispose() => _http.Dispose();

    private static bool IsTransient(HttpStatusCode status) => status == HttpStatusCode.TooManyRequests || (int)status >= 500;

    private static string ReadBody(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        using var stream = response.Content.ReadAsStream(cancellationToken);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }

    private string ParseContent(string text)
    {
        try
        {
            using var document = JsonDocument.Parse(text);
            if (document.RootElement.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array && choices.GetArrayLength() > 0
                && choices[0].TryGetProperty("message", out var message) && message.TryGetProperty("content", out var content)
                && content.ValueKind == JsonValueKind.String)
                return content.GetString()!;
        }
        catch (JsonException)
        {
            // Reported below with the body.
        }

        throw new HttpRequestException($"Judge endpoint {_endpoint} answered without choices[0].message.content: {Snippet(text)}");
    }

    private static string Snippet(string text) => text.Length <= 300 ? text : text[..300] + "…";
}
