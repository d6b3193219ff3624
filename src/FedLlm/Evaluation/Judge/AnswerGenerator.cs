using FedLlm.Data.Templates;
using FedLlm.Generation;

namespace FedLlm.Evaluation.Judge;

/// <summary>
/// Generates FastChat-style answers (gen_model_answer.py): turn 1 from the question alone, turn 2 from the conversation
/// so far (question 1, the model's own answer 1, question 2), each rendered by a chat template into the plain-text prompt
/// <see cref="IEvaluationModel"/> takes. Answers are stripped of surrounding whitespace, as FastChat strips them.
/// </summary>
/// <remarks>
/// All questions' turn 1 are generated before any turn 2, in batches of <see cref="EvaluationRunOptions.BatchSize"/>
/// prompts that share a temperature.
/// </remarks>
public static class AnswerGenerator
{
    /// <summary>FastChat's temperature_config; other categories (all of Vicuna-Bench's but math and coding) use 0.7.</summary>
    public static IReadOnlyDictionary<string, double> CategoryTemperature { get; } = new Dictionary<string, double>
    {
        ["writing"] = 0.7,
        ["roleplay"] = 0.7,
        ["extraction"] = 0.0,
        ["math"] = 0.0,
        ["coding"] = 0.0,
        ["reasoning"] = 0.0,
        ["stem"] = 0.1,
        ["humanities"] = 0.1,
    };

    /// <summary>FastChat's temperature for categories without their own (0.7).</summary>
    public const double DefaultTemperature = 0.7;

    /// <summary>The stop strings of a conversation format: where a base model would start writing the user's next turn.</summary>
    public static IReadOnlyList<string> StopStrings(IConversationFormat format) => format switch
    {
        VicunaConversation => ["</s>", "USER:"],
        HeaderTurnConversation header => [header.EndOfTurn],
        _ => [], // a model's own chat template ends turns with its EOS token, where generation stops anyway
    };

    /// <param name="answered">Called with the number of answer turns generated so far.</param>
    /// <param name="questions">The questions, each with one or two turns.</param>
    /// <param name="model">The model that answers.</param>
    /// <param name="format">How turns are laid out in the prompt (the model's chat template or a named conversation
    /// format).</param>
    /// <param name="generation">The model id written into the answers, token budget and temperatures.</param>
    /// <param name="options">Batch size and seed.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    public static IReadOnlyList<ModelAnswer> Generate(
        IReadOnlyList<JudgeQuestion> questions, IEvaluationModel model, IConversationFormat format, AnswerGenerationOptions generation,
        EvaluationRunOptions options, Action<int>? answered = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(questions);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(format);
        ArgumentNullException.ThrowIfNull(generation);
        ArgumentNullException.ThrowIfNull(options);
        var answers = questions.Select(_ => new List<string>()).ToArray();
        var stops = StopStrings(format);
        var calls = 0;
        var done = 0;
        var maxTurns = questions.Count == 0 ? 0 : questions.Max(q => q.Turns.Count);
        for (var turn = 0; turn < maxTurns; turn++)
        {
            var pending = Enumerable.Range(0, questions.Count).Where(i => questions[i].Turns.Count > turn);
            foreach (var group in pending.GroupBy(i => generation.Temperature ?? CategoryTemperature.GetValueOrDefault(questions[i].Category, DefaultTemperature)))
            {
                foreach (var chunk in group.Chunk(Math.Max(1, options.BatchSize)))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var prompts = chunk.Select(i => format.FormatPrompt(History(questions[i], answers[i], turn))).ToList();
                    var outputs = model.Generate(prompts, new GenerationOptions
                    {
                        MaxNewTokens = generation.MaxNewTokens,
                        Temperature = group.Key,
                        StopStrings = stops,
                        Seed = options.Seed + calls++,
                    }, cancellationToken);
                    if (outputs.Count != prompts.Count)
                        throw new InvalidOperationException($"The model returned {outputs.Count} generations for {prompts.Count} prompts.");
                    for (var j = 0; j < chunk.Length; j++) answers[chunk[j]].Add(outputs[j].Trim());
                    done += chunk.Length;
                    answered?.Invoke(done);
                }
            }
        }

        var stamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
        return questions.Select((q, i) => new ModelAnswer(q.QuestionId, q.NumericId, Guid.NewGuid().ToString("N")[..22], generation.ModelId, answers[i], stamp)).ToList();
    }

    /// <summary>The conversation up to the user's turn <paramref name="turn"/> (0-based), with the model's earlier answers.</summary>
    public static IReadOnlyList<ChatMessage> History(JudgeQuestion question, IReadOnlyList<string> earlierAnswers, int turn)
    {
        ArgumentNullException.ThrowIfNull(question);
        var history = new List<ChatMessage>();
        for (var t = 0; t < turn; t++)
        {
            history.Add(new ChatMessage(ChatMessage.User, question.Turns[t]));
            history.Add(new ChatMessage(ChatMessage.Assistant, earlierAnswers[t]));
        }

        history.Add(new ChatMessage(ChatMessage.User, question.Turns[turn]));
        return history;
    }
}
