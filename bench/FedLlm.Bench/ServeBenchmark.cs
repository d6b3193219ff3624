using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using FedLlm.Defaults;
using FedLlm.Modeling;
using FedLlm.Serving;
using FedLlm.Serving.Http;
using FedLlm.Tokenization;

namespace FedLlm.Bench;

/// <summary>
/// Latency and throughput of <c>fedllm serve</c>: the real OpenAI-compatible server in-process on a free port, driven by
/// 1 and N concurrent streaming clients over HTTP; each client sends its requests one after another. Reports time to
/// first token (TTFT) and tokens/s per stream and in total, for the embedded default and a SmolLM-135M-shaped random model.
/// </summary>
public static class ServeBenchmark
{
    public const string Usage = "serve [--models default,smollm-135m] [--streams 1,8] [--max-tokens 64] [--requests 3] [--max-batch-size 8]";

    public static int Run(IReadOnlyList<string> arguments)
    {
        var models = BenchArguments.String(arguments, "--models", "default,smollm-135m").Split(',');
        var streams = BenchArguments.String(arguments, "--streams", "1,8").Split(',').Select(int.Parse).ToArray();
        int maxTokens = BenchArguments.Int(arguments, "--max-tokens", 64);
        int requests = BenchArguments.Int(arguments, "--requests", 3);
        int maxBatch = BenchArguments.Int(arguments, "--max-batch-size", 8);
        Console.WriteLine($"max_tokens {maxTokens}, {requests} requests per stream, batches of ≤ {maxBatch}, greedy, {Environment.ProcessorCount} cores");
        Console.WriteLine("| model | streams | TTFT median (ms) | TTFT p90 (ms) | tokens/s per stream | tokens/s total | tokens |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var name in models)
        {
            using var session = Open(name, maxBatch);
            var server = OpenAiServer.StartAsync(session.Served, session.Engine, new OpenAiServerOptions { Port = 0 }).GetAwaiter().GetResult();
            try
            {
                using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromMinutes(30) };
                Measure(http, session.Served.BaseName, 1, 1, 4).GetAwaiter().GetResult(); // warm-up: first-call allocations
                foreach (int n in streams)
                {
                    var r = Measure(http, session.Served.BaseName, n, requests, maxTokens).GetAwaiter().GetResult();
                    Console.WriteLine($"| {name} | {n} | {r.TtftMedian:F0} | {r.TtftP90:F0} | {r.PerStream:F1} | {r.Total:F1} | {r.Tokens} |");
                }
            }
            finally
            {
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
        return 0;
    }

    static ServingSession Open(string name, int maxBatch)
    {
        var engine = new EngineOptions { MaxBatchSize = maxBatch, MaxQueue = 64, BatchWindow = TimeSpan.FromMilliseconds(5) };
        var defaults = EmbeddedDefault.Ensure(m => Console.Error.WriteLine(m));
        var tokenizer = TokenizerLoader.Load(defaults.ModelDirectory);
        switch (name)
        {
            case "default":
                return new ServingSession(ModelLoader.Load(defaults.ModelDirectory), tokenizer, name, [], "alpaca", engine);
            case "smollm-135m":
                // SmolLM-135M's shape with random weights; the default's tokenizer, widened to its 49,152-token vocabulary,
                // encodes the prompts: the cost per token is the model's, not the text's.
                var model = LlamaForCausalLM.CreateRandom(FedLlmTrainStep.SmolLm135M, seed: 1, std: 0.02);
                return new ServingSession(model, new WidenedVocabulary(tokenizer, FedLlmTrainStep.SmolLm135M.VocabSize), name, [], "alpaca", engine);
            default:
                throw new ArgumentException($"--models: unknown model '{name}' (default, smollm-135m)");
        }
    }

    sealed record Result(double TtftMedian, double TtftP90, double PerStream, double Total, long Tokens);

    static async Task<Result> Measure(HttpClient http, string model, int streams, int requests, int maxTokens)
    {
        var ttfts = new List<double>();
        var perStream = new double[streams];
        long tokens = 0;
        var wall = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, streams).Select(async s =>
        {
            var clock = Stopwatch.StartNew();
            long mine = 0;
            for (int i = 0; i < requests; i++)
            {
                var (ttft, count) = await OneStream(http, model, $"Classify the sentiment of headline {s}-{i}: profits rose sharply", maxTokens);
                lock (ttfts) ttfts.Add(ttft);
                mine += count;
            }
            perStream[s] = mine / clock.Elapsed.TotalSeconds;
            Interlocked.Add(ref tokens, mine);
        }));
        double seconds = wall.Elapsed.TotalSeconds;
        ttfts.Sort();
        return new Result(ttfts[ttfts.Count / 2], ttfts[(int)Math.Min(ttfts.Count - 1, Math.Ceiling(ttfts.Count * 0.9) - 1)], perStream.Average(), tokens / seconds, tokens);
    }

    /// <summary>One streamed chat completion: milliseconds to the first content chunk, and the completion tokens from usage.</summary>
    static async Task<(double Ttft, long Tokens)> OneStream(HttpClient http, string model, string prompt, int maxTokens)
    {
        var body = new JsonObject
        {
            ["model"] = model, ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt }),
            ["max_tokens"] = maxTokens, ["temperature"] = 0, ["stream"] = true, ["stream_options"] = new JsonObject { ["include_usage"] = true },
        };
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = JsonContent.Create(body) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        double ttft = double.NaN;
        long tokens = 0;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal) || line == "data: [DONE]") continue;
            var chunk = JsonNode.Parse(line["data: ".Length..])!;
            if (chunk["usage"] is JsonObject usage) tokens = usage["completion_tokens"]!.GetValue<long>();
            // The first chunk carries only the role; the first token is the first chunk with a finish reason or content.
            var choice = chunk["choices"] is JsonArray { Count: > 0 } choices ? choices[0] : null;
            if (double.IsNaN(ttft) && choice?["delta"]?["role"] is null && choice is not null) ttft = clock.Elapsed.TotalMilliseconds;
        }
        return (ttft, tokens);
    }

    /// <summary>A tokenizer that claims a larger vocabulary: an id beyond the inner one decodes as the inner id it wraps to,
    /// so every generated token shows as text and the first streamed chunk marks the first token.</summary>
    sealed class WidenedVocabulary(ITextTokenizer inner, int vocabSize) : ITextTokenizer
    {
        public int VocabSize => vocabSize;
        public int? BosTokenId => inner.BosTokenId;
        public int? EosTokenId => inner.EosTokenId;
        public int? PadTokenId => inner.PadTokenId;
        public string? ChatTemplate => inner.ChatTemplate;
        public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false) => inner.Encode(text, addSpecialTokens);
        public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true) => inner.Decode(ids.Select(i => i % inner.VocabSize), skipSpecialTokens);
        public int? TokenToId(string token) => inner.TokenToId(token);
    }
}
