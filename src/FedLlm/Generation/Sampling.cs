using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Generation;

/// <summary>Chooses the next token from logits: greedy, or temperature / top-k / top-p sampling as transformers' warpers do.</summary>
public static class Sampling
{
    /// <param name="logits">(B, V) logits of the last position.</param>
    /// <returns>(B) int64 token ids.</returns>
    /// <param name="options">Temperature, top-k and top-p (temperature 0 = greedy argmax).</param>
    /// <param name="generator">The sampling generator (one per sequence, seeded).</param>
    public static Tensor NextTokens(Tensor logits, GenerationOptions options, Generator generator)
    {
        using var scope = NewDisposeScope();
        var scores = logits.to(ScalarType.Float32);
        if (options.Temperature == 0) return scores.argmax(-1).MoveToOuterDisposeScope();

        // Every Scalar named: an implicit one can be finalised while libtorch reads it (Runtime.Scalars).
        using var temperature = options.Temperature.ToScalar();
        using var negativeInfinity = double.NegativeInfinity.ToScalar();
        scores = scores.div(temperature);
        if (options.TopK > 0 && options.TopK < scores.shape[^1])
        {
            var kth = scores.topk(options.TopK, -1).values.narrow(-1, options.TopK - 1, 1); // (B, 1)
            scores = scores.masked_fill(scores < kth, negativeInfinity);
        }
        if (options.TopP < 1.0)
        {
            var (sorted, order) = scores.sort(-1, descending: false);                      // ascending, as transformers
            var cumulative = sorted.softmax(-1).cumsum(-1);
            using var keptMass = (1 - options.TopP).ToScalar();
            using var keep = false.ToScalar();
            var removeSorted = cumulative.le(keptMass);
            removeSorted.narrow(-1, removeSorted.shape[^1] - 1, 1).fill_(keep);            // always keep the best token
            var remove = removeSorted.scatter(-1, order, removeSorted);
            scores = scores.masked_fill(remove, negativeInfinity);
        }
        var probabilities = scores.softmax(-1);
        return multinomial(probabilities, 1, generator: generator).squeeze(-1).MoveToOuterDisposeScope();
    }
}
