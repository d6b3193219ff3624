using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using FedLlm.Serving;
using FedLlm.Serving.Http;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;

namespace FedLlm.Tests.Serving;

/// <summary>`fedllm serve` driven by the official OpenAI .NET client against the real server, in-process on a free port.</summary>
public sealed class OpenAiServerTests(ServingFixture fixture) : IClassFixture<ServingFixture>
{
    const string Question = "Which way is the wind blowing?";

    static OpenAIClientOptions Options(Uri v1) => new() { Endpoint = v1, RetryPolicy = new ClientRetryPolicy(maxRetries: 0) };

    static ChatClient Chat(RunningServer s, string model, string key = "unused") => new(model, new ApiKeyCredential(key), Options(s.V1));

    static ChatCompletionOptions Greedy(int maxTokens) => new() { Temperature = 0, MaxOutputTokenCount = maxTokens };

    [Fact]
    public async Task Models_lists_the_base_and_every_adapter()
    {
        await using var server = await fixture.StartAsync();
        var models = (await new OpenAIModelClient(new ApiKeyCredential("unused"), Options(server.V1)).GetModelsAsync()).Value;
        Assert.Equal(new[] { "tiny-llama3", "alpha", "beta" }, models.Select(m => m.Id));
    }

    [Fact]
    public async Task Chat_completion_is_the_adapters_own_greedy_generation_with_usage()
    {
        await using var server = await fixture.StartAsync();
        var completion = (await Chat(server, "alpha").CompleteChatAsync([new UserChatMessage(Question)], Greedy(12))).Value;

        string expected = fixture.ReferenceChat("alpha", Question, 12);
        Assert.Equal(expected, completion.Content[0].Text);
        Assert.NotEqual(fixture.ReferenceChat(null, Question, 12), expected); // the adapter changes the answer
        int promptTokens = new ChatPrompt(fixture.Tokenizer, "model").Encode([new FedLlm.Data.Templates.ChatMessage("user", Question)]).Length;
        Assert.Equal(promptTokens, completion.Usage.InputTokenCount);
        Assert.Equal(completion.FinishReason == ChatFinishReason.Length ? 12 : completion.Usage.OutputTokenCount, completion.Usage.OutputTokenCount);
        Assert.Equal(completion.Usage.InputTokenCount + completion.Usage.OutputTokenCount, completion.Usage.TotalTokenCount);
        Assert.Equal("alpha", completion.Model);
    }

    [Fact]
    public async Task Streaming_sends_chunks_that_add_up_to_the_whole_answer()
    {
        await using var server = await fixture.StartAsync();
        var client = Chat(server, "beta");
        var whole = (await client.CompleteChatAsync([new UserChatMessage(Question)], Greedy(16))).Value.Content[0].Text;

        var text = new StringBuilder();
        int chunks = 0;
        ChatFinishReason? finish = null;
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage(Question)], Greedy(16)))
        {
            foreach (var part in update.ContentUpdate) { text.Append(part.Text); chunks++; }
            finish ??= update.FinishReason;
        }
        Assert.Equal(whole, text.ToString());
        Assert.True(chunks > 3, $"{chunks} content chunks: the answer was not streamed token by token");
        Assert.NotNull(finish);
    }

    [Fact]
    public async Task Stop_strings_cut_the_answer_before_the_stop_in_chat_and_completions()
    {
        await using var server = await fixture.StartAsync();
        string full = fixture.ReferenceChat("alpha", Question, 24);
        Assert.True(full.Length > 8, $"reference answer too short to pick a stop string from: '{full}'");
        string stop = full.Substring(full.Length / 2, 3);
        string expected = full[..full.IndexOf(stop, StringComparison.Ordinal)];

        var options = Greedy(24);
        options.StopSequences.Add(stop);
        var chat = (await Chat(server, "alpha").CompleteChatAsync([new UserChatMessage(Question)], options)).Value;
        Assert.Equal(expected, chat.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, chat.FinishReason);

        var streamed = new StringBuilder();
        await foreach (var update in Chat(server, "alpha").CompleteChatStreamingAsync([new UserChatMessage(Question)], options))
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
        Assert.Equal(expected, streamed.ToString()); // no piece of the stop string leaked into the stream

        // /v1/completions (the legacy endpoint the OpenAI client no longer wraps): raw prompt, same stop rule.
        using var http = new HttpClient { BaseAddress = server.Server.BaseAddress };
        var body = new JsonObject { ["model"] = "tiny-llama3", ["prompt"] = "The wind", ["max_tokens"] = 20, ["temperature"] = 0 };
        var plain = JsonNode.Parse(await (await http.PostAsJsonAsync("v1/completions", body)).Content.ReadAsStringAsync())!;
        string plainText = plain["choices"]![0]!["text"]!.GetValue<string>();
        Assert.True(plainText.Length > 6, $"completion too short: '{plainText}'");
        string completionStop = plainText.Substring(plainText.Length / 2, 2);
        body["stop"] = new JsonArray(completionStop);
        var cut = JsonNode.Parse(await (await http.PostAsJsonAsync("v1/completions", body)).Content.ReadAsStringAsync())!;
        Assert.Equal(plainText[..plainText.IndexOf(completionStop, StringComparison.Ordinal)], cut["choices"]![0]!["text"]!.GetValue<string>());
        Assert.Equal("stop", cut["choices"]![0]!["finish_reason"]!.GetValue<string>());
        Assert.Equal("text_completion", cut["object"]!.GetValue<string>());
    }

    [Fact]
    public async Task Concurrent_requests_for_two_adapters_share_a_batch_and_each_gets_its_adapters_answer()
    {
        RecordingDecoder? recorder = null;
        await using var server = await fixture.StartAsync(
            new EngineOptions { MaxBatchSize = 8, BatchWindow = TimeSpan.FromMilliseconds(500) },
            wrap: d => recorder = new RecordingDecoder(d));
        var alpha = Chat(server, "alpha").CompleteChatAsync([new UserChatMessage(Question)], Greedy(12));
        var beta = Chat(server, "beta").CompleteChatAsync([new UserChatMessage(Question)], Greedy(12));
        var baseModel = Chat(server, "tiny-llama3").CompleteChatAsync([new UserChatMessage(Question)], Greedy(12));
        await Task.WhenAll(alpha, beta, baseModel);

        string expectedAlpha = fixture.ReferenceChat("alpha", Question, 12);
        string expectedBeta = fixture.ReferenceChat("beta", Question, 12);
        Assert.NotEqual(expectedAlpha, expectedBeta);
        Assert.Equal(expectedAlpha, (await alpha).Value.Content[0].Text);
        Assert.Equal(expectedBeta, (await beta).Value.Content[0].Text);
        Assert.Equal(fixture.ReferenceChat(null, Question, 12), (await baseModel).Value.Content[0].Text);
        Assert.Contains(recorder!.Batches, b => b.Distinct().Count() == 3); // base, alpha and beta in one forward pass
    }

    [Fact]
    public async Task Without_a_valid_key_the_server_answers_401()
    {
        await using var server = await fixture.StartAsync(keys: new ApiKeys(["sk-right"]));
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => Chat(server, "alpha", "sk-wrong").CompleteChatAsync([new UserChatMessage(Question)], Greedy(2)));
        Assert.Equal(401, refused.Status);
        using var http = new HttpClient { BaseAddress = server.Server.BaseAddress };
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("v1/models")).StatusCode);

        var accepted = (await Chat(server, "alpha", "sk-right").CompleteChatAsync([new UserChatMessage(Question)], Greedy(2))).Value;
        Assert.Equal(fixture.ReferenceChat("alpha", Question, 2), accepted.Content[0].Text);
    }

    [Fact]
    public async Task A_full_queue_answers_429_and_the_queued_requests_still_complete()
    {
        GatedDecoder? gate = null;
        await using var server = await fixture.StartAsync(
            new EngineOptions { MaxBatchSize = 1, MaxQueue = 1, BatchWindow = TimeSpan.Zero }, wrap: d => gate = new GatedDecoder(d));
        var running = Chat(server, "alpha").CompleteChatAsync([new UserChatMessage(Question)], Greedy(4));
        await WaitUntil(() => server.Engine.Running == 1);
        var queued = Chat(server, "beta").CompleteChatAsync([new UserChatMessage(Question)], Greedy(4));
        await WaitUntil(() => server.Engine.Queued == 1);

        var refused = await Assert.ThrowsAsync<ClientResultException>(() => Chat(server, "alpha").CompleteChatAsync([new UserChatMessage(Question)], Greedy(4)));
        Assert.Equal(429, refused.Status);

        gate!.Release();
        Assert.Equal(fixture.ReferenceChat("alpha", Question, 4), (await running).Value.Content[0].Text);
        Assert.Equal(fixture.ReferenceChat("beta", Question, 4), (await queued).Value.Content[0].Text);
    }

    [Fact]
    public async Task Bad_requests_get_OpenAI_errors_that_name_the_field()
    {
        await using var server = await fixture.StartAsync();
        using var http = new HttpClient { BaseAddress = server.Server.BaseAddress };
        async Task<(HttpStatusCode, JsonNode)> Post(string json)
        {
            var response = await http.PostAsync("v1/chat/completions", new StringContent(json, Encoding.UTF8, "application/json"));
            return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!);
        }
        var (status, body) = await Post("""{"model":"gamma","messages":[{"role":"user","content":"hi"}]}""");
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Contains("alpha", body["error"]!["message"]!.GetValue<string>());
        (status, body) = await Post("""{"model":"alpha","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("temperature", body["error"]!["param"]!.GetValue<string>());
        (status, body) = await Post("""{"model":"alpha","messages":[{"role":"user","content":"hi"}],"max_tokens":100000}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("max_tokens", body["error"]!["param"]!.GetValue<string>());
        (status, _) = await Post("""{"model":"alpha","messages":[{"role":"assistant","content":"hi"}]}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
    }

    static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the engine never reached the expected state");
            await Task.Delay(10);
        }
    }
}
