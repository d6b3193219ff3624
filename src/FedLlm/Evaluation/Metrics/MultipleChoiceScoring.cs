using System.Text;

namespace FedLlm.Evaluation.Metrics;

/// <summary>The choice a model picks by log-likelihood, raw and length-normalised.</summary>
/// <param name="Chosen">argmax of Σ log p(choice | context): lm-eval's <c>acc</c>.</param>
/// <param name="ChosenNormalized">argmax of the log-likelihood divided by the choice's UTF-8 byte length (without the
/// " " that joins it to the prompt, as lm-eval measures the choice, not the continuation): lm-eval's <c>acc_norm</c>.</param>
public sealed record MultipleChoicePick(int Chosen, int ChosenNormalized);

/// <summary>lm-evaluation-harness's choice of a multiple-choice answer from the choices' log-likelihoods.</summary>
public static class MultipleChoiceScoring
{
    /// <summary>Picks the best choice; ties go to the first, as numpy's argmax does.</summary>
    public static MultipleChoicePick Pick(IReadOnlyList<double> logLikelihoods, IReadOnlyList<string> continuations)
    {
        if (logLikelihoods.Count != continuations.Count || logLikelihoods.Count == 0)
            throw new ArgumentException("one log-likelihood per choice, at least one choice");
        return new MultipleChoicePick(ArgMax(logLikelihoods),
            ArgMax(logLikelihoods.Select((ll, i) => ll / Math.Max(1, Encoding.UTF8.GetByteCount(WithoutDelimiter(continuations[i])))).ToList()));
    }

    /// <summary>The choice text: the continuation without lm-eval's target delimiter, a single leading space.</summary>
    public static string WithoutDelimiter(string continuation) => continuation.StartsWith(' ') ? continuation[1..] : continuation;

    static int ArgMax(IReadOnlyList<double> values)
    {
        int best = 0;
        for (int i = 1; i < values.Count; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}
