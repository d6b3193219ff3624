using System.Collections.Concurrent;
using FedLlm.Evaluation;
using FedLlm.Generation;

namespace FedLlm.Tests.Evaluation.Code;

/// <summary>
/// An <see cref="IEvaluationModel"/> whose generations are known: a function of the prompt and of how many times that
/// prompt was asked before (so the n samples of one problem can differ). Records every call.
/// </summary>
internal sealed class ScriptedCompletionModel(Func<string, int, string> answer) : IEvaluationModel
{
    private readonly ConcurrentDictionary<string, int> _asked = new();

    public List<(IReadOnlyList<string> Prompts, GenerationOptions Options)> Calls { get; } = [];

    public IReadOnlyList<LogLikelihood> LogLikelihoods(IReadOnlyList<LogLikelihoodRequest> requests, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException("generation tasks do not ask for log-likelihoods");

    public IReadOnlyList<string> Generate(IReadOnlyList<string> prompts, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        lock (Calls) Calls.Add((prompts, options));
        return prompts.Select(p =>
        {
            var count = _asked.AddOrUpdate(p, 0, (_, c) => c + 1);
            return answer(p, count);
        }).ToList();
    }
}
