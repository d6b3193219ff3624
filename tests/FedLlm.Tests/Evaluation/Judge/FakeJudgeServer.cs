using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace FedLlm.Tests.Evaluation.Judge;

/// <summary>One chat-completions request as the fake judge received it.</summary>
internal sealed record JudgeRequest(string Model, string System, string User, double Temperature, int MaxTokens, string? Authorization);

/// <summary>
/// An OpenAI-compatible judge on 127.0.0.1 (an ephemeral port) that answers from a script: the handler sees the request
/// and how many times the same user prompt was sent before, and returns (status, body).
/// </summary>
internal sealed class FakeJudgeServer : IDisposable
{
    private readonly HttpListener _listener;
    private readonly Func<JudgeRequest, int, (int Status, string Body)> _handler;
    private readonly ConcurrentDictionary<string, int> _seen = new();
    private readonly Task _loop;

    public FakeJudgeServer(Func<JudgeRequest, int, (int Status, string Body)> handler)
    {
        _handler = handler;
        for (var attempt = 0; ; attempt++)
        {
            // Ask the OS for a free port, then listen on it (another process could take it in between; retry then).
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            Port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            // A new listener per attempt: one whose Start failed is disposed and refuses further use.
            var listener = new HttpListener();
            listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
            try
            {
                listener.Start();
                _listener = listener;
                break;
            }
            catch (HttpListenerException) when (attempt < 5)
            {
                listener.Close();
            }
        }

        _loop = Task.Run(Serve);
    }

    public int Port { get; }

    public string BaseUrl => $"http://127.0.0.1:{Port}/v1";

    public ConcurrentQueue<JudgeRequest> Requests { get; } = new();

    /// <summary>A chat-completions reply whose message is <paramref name="content"/>.</summary>
    public static (int, string) Reply(string content) =>
        (200, JsonSerializer.Serialize(new { id = "x", @object = "chat.completion", choices = new[] { new { index = 0, message = new { role = "assistant", content }, finish_reason = "stop" } } }));

    public void Dispose()
    {
        // Close alone: Stop then Close makes the managed HttpListener re-bind the port to remove it again, which
        // fails with "address already in use" while the closed connections sit in TIME_WAIT.
        _listener.Close();
        try
        {
            _loop.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
    }

    private async Task Serve()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            _ = Task.Run(() => Handle(context));
        }
    }

    private void Handle(HttpListenerContext context)
    {
        int status;
        string body;
        if (context.Request.HttpMethod != "POST" || context.Request.Url?.AbsolutePath != "/v1/chat/completions")
        {
            (status, body) = (404, "{\"error\": \"not found\"}");
        }
        else
        {
            using var reader = new StreamReader(context.Request.InputStream, Encoding.UTF8);
            using var json = JsonDocument.Parse(reader.ReadToEnd());
            var root = json.RootElement;
            var messages = root.GetProperty("messages");
            var request = new JudgeRequest(
                root.GetProperty("model").GetString()!,
                messages[0].GetProperty("role").GetString() == "system" ? messages[0].GetProperty("content").GetString()! : "",
                messages[1].GetProperty("content").GetString()!,
                root.GetProperty("temperature").GetDouble(),
                root.GetProperty("max_tokens").GetInt32(),
                context.Request.Headers["Authorization"]);
            Requests.Enqueue(request);
            var before = _seen.AddOrUpdate(request.User, 0, (_, n) => n + 1);
            (status, body) = _handler(request, before);
        }

        var bytes = Encoding.UTF8.GetBytes(body);
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength64 = bytes.Length;
        context.Response.OutputStream.Write(bytes);
        context.Response.Close();
    }
}
