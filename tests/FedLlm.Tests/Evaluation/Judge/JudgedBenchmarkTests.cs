using System.Text.Json;
using FedLlm.Evaluation;
using FedLlm.Evaluation.Judge;
using FedLlm.Evaluation.Tasks;
using FedLlm.Tests.Evaluation.Code;

namespace FedLlm.Tests.Evaluation.Judge;

/// <summary>MT-Bench and Vicuna-Bench end to end: a scripted model, a fake judge server on 127.0.0.1, FastChat's files.</summary>
public sealed class JudgedBenchmarkTests : IDisposable
{
    private static readonly string MtBenchPath = Path.Combine(AppContext.BaseDirectory, "Fixtures", "eval", "mt_bench_question.jsonl");
    private static readonly string VicunaPath = Path.Combine(AppContext.BaseDirectory, "Fixtures", "eval", "vicuna_bench_question.jsonl");

    private readonly string _directory = Directory.CreateTempSubdirectory("fedllm-judged-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>Answers "ANSWER-{id}-{turn}" (padded with spaces, which must be stripped) to the question turn the vicuna prompt ends with.</summary>
    private static ScriptedCompletionModel AnsweringModel(string questionsPath)
    {
        var questions = JudgeQuestion.ReadJsonl(questionsPath);
        return new ScriptedCompletionModel((prompt, _) =>
        {
            foreach (var q in questions)
                for (var t = 0; t < q.Turns.Count; t++)
                    if (prompt.EndsWith("USER: " + q.Turns[t] + " ASSISTANT:", StringComparison.Ordinal))
                        return $"  ANSWER-{q.QuestionId}-{t + 1}\n";
            throw new InvalidOperationException($"unexpected prompt: {prompt}");
        });
    }

    private string WriteJudgeConfig(FakeJudgeServer server, string extra = "")
    {
        var path = Path.Combine(_directory, $"judge-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, $"base_url: {server.BaseUrl}\nmodel: fake-judge\nparallel: 2\nretry_delay_seconds: 0.01\n{extra}");
        return path;
    }

    private static EvaluationTaskSpec Spec(string name, string data, params (string, string)[] parameters) =>
        new(name, data, parameters.ToDictionary(p => p.Item1, p => p.Item2));

    [Fact]
    public void MtBench_generates_both_turns_grades_them_and_reports_fastchat_means()
    {
        // Scripted judgments per answer turn: 81-2 has no rating (−1, excluded), 111-1 only the [x] fallback,
        // and 111-2 is first refused with 429.
        var judgments = new Dictionary<string, string>
        {
            ["ANSWER-81-1"] = "Vivid and concise. Rating: [[8]]",
            ["ANSWER-91-1"] = "Good voice. Rating: [[6.5]]",
            ["ANSWER-111-1"] = "The product is wrong; rating [3]",
            ["ANSWER-81-2"] = "I refuse to give a number.",
            ["ANSWER-91-2"] = "Rating: [[7]]",
            ["ANSWER-111-2"] = "Rating: [[4]]",
        };
        var keyVariable = $"FEDLLM_TEST_JUDGE_KEY_{Guid.NewGuid():N}";
        Environment.SetEnvironmentVariable(keyVariable, "sk-test");
        using var server = new FakeJudgeServer((request, before) =>
        {
            // The turn being graded: turn-2 prompts hold both answers, so look for the second first.
            var key = judgments.Keys.Where(k => k.EndsWith("-2", StringComparison.Ordinal)).FirstOrDefault(request.User.Contains)
                ?? judgments.Keys.First(request.User.Contains);
            if (key == "ANSWER-111-2" && before == 0) return (429, "{\"error\": {\"message\": \"rate limited\"}}");
            return FakeJudgeServer.Reply(judgments[key]);
        });
        var output = Path.Combine(_directory, "mt");
        var task = JudgedBenchmarkTask.FromSpec(Spec("mt_bench", MtBenchPath,
            ("judge", WriteJudgeConfig(server, $"api_key_env: {keyVariable}\nmax_tokens: 1000\n")), ("output_dir", output), ("model_id", "tiny-lora")));
        var model = AnsweringModel(MtBenchPath);
        var progress = new List<EvaluationProgress>();
        var report = task.Evaluate(model, new EvaluationRunOptions { BatchSize = 8 }, new SynchronousProgress(progress));
        Environment.SetEnvironmentVariable(keyVariable, null);

        // MT-1 = (8 + 6.5 + 3)/3; MT-2 = (7 + 4)/2; MT-Avg pools the five scored judgments: 28.5/5 = 5.7
        // (the mean of MT-1 and MT-2 would be 5.667).
        Assert.Equal(17.5 / 3, report.Metrics["mt_1"], 12);
        Assert.Equal(5.5, report.Metrics["mt_2"], 12);
        Assert.Equal(5.7, report.Metrics["mt_avg"], 12);
        Assert.Equal(6, report.Metrics["judgments"]);
        Assert.Equal(1, report.Metrics["unscored"]);
        Assert.Equal(3, report.Items);
        // Per category: writing has only its turn-1 score; roleplay (6.5 + 7)/2; math (3 + 4)/2.
        Assert.Equal(8, report.Groups["writing"]["mt_avg"]);
        Assert.False(report.Groups["writing"].ContainsKey("mt_2"));
        Assert.Equal(6.75, report.Groups["roleplay"]["mt_avg"], 12);
        Assert.Equal(3.5, report.Groups["math"]["mt_avg"], 12);
        Assert.Equal(-1, report.Samples.Single(s => s.Id == "81/turn2").Score);

        // Turn 2 was generated from the conversation so far, in vicuna_v1.1, with the stripped turn-1 answer.
        var prompts = model.Calls.SelectMany(c => c.Prompts).ToList();
        Assert.Contains(prompts, p => p.EndsWith(
            "USER: What is 17 * 23? ASSISTANT: ANSWER-111-1</s>USER: Now divide that result by 7 and round to two decimals. ASSISTANT:", StringComparison.Ordinal));
        // FastChat's per-category temperatures: writing and roleplay 0.7, math greedy.
        Assert.All(model.Calls, c => Assert.Equal(c.Prompts.Any(p => p.Contains("17 * 23")) ? 0.0 : 0.7, c.Options.Temperature));

        // The judge: temperature 0, the configured budget and key, 429 retried, reference prompts for math.
        var requests = server.Requests.ToList();
        Assert.Equal(7, requests.Count);
        Assert.All(requests, r => Assert.Equal(("fake-judge", 0.0, 1000, "Bearer sk-test"), (r.Model, r.Temperature, r.MaxTokens, r.Authorization)));
        var math2 = requests.First(r => r.User.Contains("ANSWER-111-2"));
        Assert.StartsWith("Please act as an impartial judge", math2.System);
        Assert.Contains("### Reference answer:\n391", math2.User);
        Assert.Contains("### Reference answer:\n55.86", math2.User);
        var writing1 = requests.Single(r => r.User.Contains("ANSWER-81-1") && !r.User.Contains("ANSWER-81-2"));
        Assert.Equal("You are a helpful assistant.", writing1.System);
        Assert.DoesNotContain("Reference", writing1.User);
        Assert.Equal(12, progress[^1].Done);
        Assert.Equal(12, progress[^1].Total);

        // FastChat's files.
        var answerLines = File.ReadAllLines(Path.Combine(output, "model_answer", "tiny-lora.jsonl"));
        Assert.Equal(3, answerLines.Length);
        using (var answer = JsonDocument.Parse(answerLines[2]))
        {
            Assert.Equal(111, answer.RootElement.GetProperty("question_id").GetInt32());
            Assert.Equal("tiny-lora", answer.RootElement.GetProperty("model_id").GetString());
            var turns = answer.RootElement.GetProperty("choices")[0].GetProperty("turns").EnumerateArray().Select(t => t.GetString()).ToList();
            Assert.Equal(["ANSWER-111-1", "ANSWER-111-2"], turns);
            Assert.True(answer.RootElement.GetProperty("tstamp").GetDouble() > 1.7e9);
        }

        var judgmentLines = File.ReadAllLines(Path.Combine(output, "model_judgment", "fake-judge_single.jsonl"));
        Assert.Equal(6, judgmentLines.Length);
        var parsed = judgmentLines.Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var unscored = parsed.Single(j => j.GetProperty("question_id").GetInt32() == 81 && j.GetProperty("turn").GetInt32() == 2);
        Assert.Equal("-1", unscored.GetProperty("score").GetRawText());
        Assert.Equal("tiny-lora", unscored.GetProperty("model").GetString());
        Assert.Equal(["fake-judge", "single-v1-multi-turn"], unscored.GetProperty("judge").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("I refuse to give a number.", unscored.GetProperty("judgment").GetString());
        var math1 = parsed.Single(j => j.GetProperty("question_id").GetInt32() == 111 && j.GetProperty("turn").GetInt32() == 1);
        Assert.Equal("single-math-v1", math1.GetProperty("judge")[1].GetString());
        Assert.Contains("[The Start of Reference Answer]\n391\n", math1.GetProperty("user_prompt").GetString());
        Assert.Equal("6.5", parsed.Single(j => j.GetProperty("question_id").GetInt32() == 91 && j.GetProperty("turn").GetInt32() == 1).GetProperty("score").GetRawText());
    }

    [Fact]
    public void VicunaBench_grades_one_turn_and_rejudges_saved_answers_without_the_model()
    {
        var scores = new Dictionary<string, string> { ["ANSWER-1-1"] = "Rating: [[9]]", ["ANSWER-2-1"] = "[[5]]", ["ANSWER-3-1"] = "Great. Rating: [[10]]" };
        using var server = new FakeJudgeServer((request, _) => FakeJudgeServer.Reply(scores[scores.Keys.First(request.User.Contains)]));
        var judge = WriteJudgeConfig(server);
        var output = Path.Combine(_directory, "vicuna");
        var task = JudgedBenchmarkTask.FromSpec(Spec("vicuna_bench", VicunaPath, ("judge", judge), ("output_dir", output)));
        var report = task.Evaluate(AnsweringModel(VicunaPath), new EvaluationRunOptions());
        // (9 + 5 + 10)/3; one judgment per question, all single-v1.
        Assert.Equal(8.0, report.Metrics["score"], 12);
        Assert.False(report.Metrics.ContainsKey("mt_2"));
        Assert.Equal(3, server.Requests.Count);
        Assert.Equal(9, report.Groups["generic"]["score"]);

        // Judging the saved answers again needs no model; --limit keeps the first question.
        var answers = Path.Combine(output, "model_answer", "fedllm.jsonl");
        var rejudge = JudgedBenchmarkTask.FromSpec(Spec("vicuna_bench", VicunaPath, ("judge", judge), ("output_dir", output), ("answers", answers)));
        var noModel = new ScriptedCompletionModel((_, _) => throw new InvalidOperationException("the model must not be asked"));
        var again = rejudge.Evaluate(noModel, new EvaluationRunOptions { Limit = 1 });
        Assert.Equal(9.0, again.Metrics["score"]);
        Assert.Equal(1, again.Items);
    }

    [Fact]
    public void The_template_parameter_chooses_the_conversation_format_and_its_stop_string()
    {
        using var server = new FakeJudgeServer((_, _) => FakeJudgeServer.Reply("[[6]]"));
        var task = JudgedBenchmarkTask.FromSpec(Spec("mt_bench", MtBenchPath,
            ("judge", WriteJudgeConfig(server)), ("output_dir", _directory), ("template", "chatml"), ("temperature", "0")));
        var model = new ScriptedCompletionModel((_, asked) => $"reply {asked}");
        var report = task.Evaluate(model, new EvaluationRunOptions { Limit = 1, MaxNewTokens = 32 });
        Assert.Equal(6.0, report.Metrics["mt_avg"]);
        var calls = model.Calls;
        Assert.Equal(2, calls.Count);
        Assert.All(calls, c => Assert.Equal(["<|im_end|>"], c.Options.StopStrings));
        Assert.All(calls, c => Assert.Equal((0.0, 32), (c.Options.Temperature, c.Options.MaxNewTokens)));
        Assert.Equal(
            "<|im_start|>user\nCompose a short travel blog post about a recent trip to Lisbon.<|im_end|>\n<|im_start|>assistant\nreply 0<|im_end|>\n" +
            "<|im_start|>user\nRewrite your previous response, starting every sentence with the letter L.<|im_end|>\n<|im_start|>assistant\n",
            Assert.Single(calls[1].Prompts));

        var unknown = Assert.Throws<ArgumentException>(() => JudgedBenchmarkTask.FromSpec(Spec("mt_bench", MtBenchPath,
            ("judge", WriteJudgeConfig(server)), ("template", "alpaca-chat"))));
        Assert.Contains("alpaca-chat", unknown.Message);
    }

    [Fact]
    public void Without_a_template_parameter_the_models_own_chat_template_is_used()
    {
        using var server = new FakeJudgeServer((_, _) => FakeJudgeServer.Reply("[[6]]"));
        var tokenizer = new TemplateOnlyTokenizer(
            "{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<<assistant>>{% endif %}");
        var task = JudgedBenchmarkTask.FromSpec(Spec("mt_bench", MtBenchPath, ("judge", WriteJudgeConfig(server)), ("output_dir", _directory)), tokenizer);
        var model = new ScriptedCompletionModel((_, _) => "ok");
        task.Evaluate(model, new EvaluationRunOptions { Limit = 1 });
        Assert.Equal(
            "<<user>>Compose a short travel blog post about a recent trip to Lisbon.\n<<assistant>>ok\n" +
            "<<user>>Rewrite your previous response, starting every sentence with the letter L.\n<<assistant>>",
            Assert.Single(model.Calls[1].Prompts));
    }

    /// <summary>A tokenizer that only carries a chat template, which is all the conversation format reads.</summary>
    private sealed class TemplateOnlyTokenizer(string template) : FedLlm.Tokenization.ITextTokenizer
    {
        public int VocabSize => 1;
        public int? BosTokenId => null;
        public int? EosTokenId => null;
        public int? PadTokenId => null;
        public string? ChatTemplate => template;
        public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false) => throw new NotSupportedException();
        public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true) => throw new NotSupportedException();
        public int? TokenToId(string token) => null;
    }

    [Fact]
    public void A_refusing_or_broken_judge_is_a_clear_error_and_only_transient_failures_are_retried()
    {
        var config = new JudgeConfig { Model = "fake-judge", MaxRetries = 2, RetryDelaySeconds = 0.01 };
        using (var unauthorized = new FakeJudgeServer((_, _) => (401, "{\"error\": {\"message\": \"Incorrect API key provided\"}}")))
        using (var judge = new OpenAiCompatibleJudge(WithUrl(config, unauthorized.BaseUrl)))
        {
            var error = Assert.Throws<HttpRequestException>(() => judge.Complete("s", "u"));
            Assert.Contains("401", error.Message);
            Assert.Contains("Incorrect API key", error.Message);
            Assert.Equal(1, judge.Requests);

            // Inside a run, the judge's error reaches the user as itself, not wrapped by the parallel loop.
            using var task = (JudgedBenchmarkTask)JudgedBenchmarkTask.FromSpec(Spec("vicuna_bench", VicunaPath,
                ("judge", WriteJudgeConfig(unauthorized)), ("output_dir", _directory)));
            var inRun = Assert.Throws<HttpRequestException>(() => task.Evaluate(AnsweringModel(VicunaPath), new EvaluationRunOptions()));
            Assert.Contains("401", inRun.Message);
        }

        using (var down = new FakeJudgeServer((_, _) => (503, "overloaded")))
        using (var judge = new OpenAiCompatibleJudge(WithUrl(config, down.BaseUrl)))
        {
            var error = Assert.Throws<HttpRequestException>(() => judge.Complete("s", "u"));
            Assert.Contains("after 3 attempts", error.Message);
            Assert.Contains("503", error.Message);
            Assert.Equal(3, down.Requests.Count);
        }

        using (var malformed = new FakeJudgeServer((_, _) => (200, "{\"choices\": []}")))
        using (var judge = new OpenAiCompatibleJudge(WithUrl(config, malformed.BaseUrl)))
        {
            var error = Assert.Throws<HttpRequestException>(() => judge.Complete("s", "u"));
            Assert.Contains("choices[0].message.content", error.Message);
            Assert.Contains(malformed.BaseUrl + "/chat/completions", error.Message);
            // A malformed success is not retried: asking again would get the same reply.
            Assert.Equal(1, judge.Requests);
        }
    }

    [Fact]
    public void A_reference_category_without_a_reference_answer_is_an_error_naming_the_question()
    {
        var questions = Path.Combine(_directory, "question.jsonl");
        File.WriteAllText(questions, "{\"question_id\": 101, \"category\": \"reasoning\", \"turns\": [\"Who is taller?\"]}\n");
        using var server = new FakeJudgeServer((_, _) => FakeJudgeServer.Reply("[[5]]"));
        var task = JudgedBenchmarkTask.FromSpec(Spec("mt_bench", questions, ("judge", WriteJudgeConfig(server)), ("output_dir", _directory)));
        var error = Assert.Throws<ArgumentException>(() => task.Evaluate(new ScriptedCompletionModel((_, _) => "Bob"), new EvaluationRunOptions()));
        Assert.Contains("Question 101 (category reasoning)", error.Message);
        Assert.Contains("references=FILE", error.Message);
        Assert.Empty(server.Requests);

        var missingJudge = Assert.Throws<ArgumentException>(() => JudgedBenchmarkTask.FromSpec(Spec("mt_bench", questions)));
        Assert.Contains("judge=judge.yaml", missingJudge.Message);
    }

    private static JudgeConfig WithUrl(JudgeConfig config, string url) => new()
    {
        BaseUrl = url, Model = config.Model, MaxRetries = config.MaxRetries, RetryDelaySeconds = config.RetryDelaySeconds,
    };

    /// <summary>Records reports as they happen (Progress&lt;T&gt; would post them to the thread pool, out of order).</summary>
    private sealed class SynchronousProgress(List<EvaluationProgress> reports) : IProgress<EvaluationProgress>
    {
        public void Report(EvaluationProgress value)
        {
            lock (reports) reports.Add(value);
        }
    }
}
