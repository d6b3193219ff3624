using FedLlm.Evaluation;
using FedLlm.Generation;

namespace FedLlm.Tests.Evaluation;

/// <summary>
/// A model whose answers are written by the test: log-likelihoods from one function, generations from another. It
/// records every request and prompt so tests can also check what the task asked.
/// </summary>
internal sealed class ScriptedEvaluationModel(
    Func<LogLikelihoodRequest, double>? logLikelihood = null,
    Func<string, string>? generate = null) : IEvaluationModel
{
    public List<LogLikelihoodRequest> Requests { get; } = [];
    public List<string> Prompts { get; } = [];
    public List<GenerationOptions> GenerationCalls { get; } = [];

    public IReadOnlyList<LogLikelihood> LogLikelihoods(IReadOnlyList<LogLikelihoodRequest> requests, CancellationToken cancellationToken = default)
    {
        Requests.AddRange(requests);
        var score = logLikelihood ?? throw new InvalidOperationException("this test's model does not score log-likelihoods");
        return requests.Select(r => new LogLikelihood(score(r), false, 1)).ToList();
    }

    public IReadOnlyList<string> Generate(IReadOnlyList<string> prompts, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        Prompts.AddRange(prompts);
        GenerationCalls.Add(options);
        var answer = generate ?? throw new InvalidOperationException("this test's model does not generate");
        return prompts.Select(answer).ToList();
    }
}

internal static class EvalFixtures
{
    public static string Path(params string[] parts) =>
        System.IO.Path.Combine([AppContext.BaseDirectory, "Fixtures", "eval", .. parts]);
}
