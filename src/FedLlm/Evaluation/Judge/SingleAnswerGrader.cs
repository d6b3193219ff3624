namespace FedLlm.Evaluation.Judge;

/// <summary>
/// FastChat's single-answer grading (gen_judgment.py --mode single): each answer turn is rated 1–10 by the judge with the
/// prompt <see cref="JudgePrompt.For"/> picks; turn 2 is graded only for two-turn questions, seeing the whole conversation.
/// </summary>
public static class SingleAnswerGrader
{
    /// <param name="questions">The questions, in file order.</param>
    /// <param name="answers">The graded model's answers by question id.</param>
    /// <param name="referenceAnswers">Reference answers by question id (FastChat's reference_answer/gpt-4.jsonl), used when a question has no <c>reference</c> field.</param>
    /// <param name="judged">Called with the number of judgments done so far (from worker threads, one at a time, in increasing order).</param>
    /// <exception cref="ArgumentException">An answer or a needed reference answer is missing.</exception>
    /// <param name="judge">The judge model.</param>
    /// <param name="modelId">The graded model's id, written into each judgment.</param>
    /// <param name="parallel">Concurrent judge requests (at least 1).</param>
    /// <param name="cancellationToken">Stops before the next judgment.</param>
    public static IReadOnlyList<Judgment> Grade(
        IReadOnlyList<JudgeQuestion> questions, IReadOnlyDictionary<string, ModelAnswer> answers,
        IReadOnlyDictionary<string, ModelAnswer>? referenceAnswers, IJudgeModel judge, string modelId, int parallel,
        Action<int>? judged = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(questions);
        ArgumentNullException.ThrowIfNull(answers);
        ArgumentNullException.ThrowIfNull(judge);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(parallel);
        var matches = Matches(questions, answers, referenceAnswers).ToList();
        var judgments = new Judgment[matches.Count];
        var done = 0;
        var progressLock = new object();
        try
        {
            Parallel.For(0, matches.Count, new ParallelOptions { MaxDegreeOfParallelism = parallel, CancellationToken = cancellationToken }, i =>
            {
                var (question, prompt, userPrompt, turn) = matches[i];
                var text = judge.Complete(prompt.SystemPrompt, userPrompt, cancellationToken);
                judgments[i] = new Judgment(question.QuestionId, question.NumericId, modelId, judge.Name, prompt.Name, userPrompt, text,
                    JudgeScoreParser.Parse(text), turn, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0);
                // Counted and reported under one lock, so a progress bar never sees the count go backwards.
                lock (progressLock) judged?.Invoke(++done);
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count >= 1)
        {
            // The judge's own error (refused, unreachable) is the message the user needs, not "one or more errors".
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }

        return judgments;
    }

    /// <summary>The number of judgments <see cref="Grade"/> makes: one per question plus one per two-turn question.</summary>
    public static int Count(IReadOnlyList<JudgeQuestion> questions) => questions.Count + questions.Count(q => q.Turns.Count == 2);

    // Every turn-1 match, then every turn-2 match, as gen_judgment.py orders them.
    private static IEnumerable<(JudgeQuestion Question, JudgePrompt Prompt, string UserPrompt, int Turn)> Matches(
        IReadOnlyList<JudgeQuestion> questions, IReadOnlyDictionary<string, ModelAnswer> answers, IReadOnlyDictionary<string, ModelAnswer>? references)
    {
        foreach (var turn in new[] { 1, 2 })
        {
            foreach (var question in questions)
            {
                if (turn == 2 && question.Turns.Count != 2) continue;
                if (!answers.TryGetValue(question.QuestionId, out var answer))
                    throw new ArgumentException($"No answer for question {question.QuestionId}.");
                if (answer.Turns.Count < question.Turns.Count)
                    throw new ArgumentException($"The answer to question {question.QuestionId} has {answer.Turns.Count} turn(s); the question has {question.Turns.Count}.");
                var prompt = JudgePrompt.For(question.NeedsReference, turn);
                var values = new Dictionary<string, string>();
                if (turn == 1)
                {
                    values["question"] = question.Turns[0];
                    values["answer"] = answer.Turns[0];
                }
                else
                {
                    values["question_1"] = question.Turns[0];
                    values["question_2"] = question.Turns[1];
                    values["answer_1"] = answer.Turns[0];
                    values["answer_2"] = answer.Turns[1];
                }

                if (prompt.ReferenceBased)
                {
                    var reference = question.Reference ?? (references is not null && references.TryGetValue(question.QuestionId, out var r) ? r.Turns : null);
                    if (reference is null || reference.Count < turn)
                        throw new ArgumentException(
                            $"Question {question.QuestionId} (category {question.Category}) is graded against a reference answer for turn {turn}, but none was found: " +
                            "add \"reference\": [...] to the question file or pass FastChat's reference answers with --param references=FILE.");
                    values["ref_answer_1"] = reference[0];
                    if (turn == 2) values["ref_answer_2"] = reference[1];
                }

                yield return (question, prompt, prompt.Format(values), turn);
            }
        }
    }
}
