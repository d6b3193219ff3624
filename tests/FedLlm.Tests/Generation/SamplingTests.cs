using FedLlm.Generation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Generation;

public class SamplingTests
{
    static long[] Draw(float[] probabilities, GenerationOptions options, int count)
    {
        using var logits = tensor(probabilities.Select(p => (float)Math.Log(p)).ToArray()).unsqueeze(0).expand(count, -1).contiguous();
        using var tokens = Sampling.NextTokens(logits, options, new Generator((ulong)options.Seed));
        return tokens.data<long>().ToArray();
    }

    [Fact]
    public void Greedy_takes_the_argmax()
    {
        Assert.All(Draw(new[] { 0.2f, 0.5f, 0.3f }, new GenerationOptions(), 5), t => Assert.Equal(1, t));
    }

    [Fact]
    public void Temperature_one_samples_the_softmax_distribution()
    {
        var tokens = Draw(new[] { 0.25f, 0.75f }, new GenerationOptions { Temperature = 1.0, Seed = 3 }, 4000);
        double share = tokens.Count(t => t == 1) / 4000.0;
        Assert.InRange(share, 0.72, 0.78);
        // Temperature 0.5 sharpens 1:3 odds to 1:9.
        var sharp = Draw(new[] { 0.25f, 0.75f }, new GenerationOptions { Temperature = 0.5, Seed = 3 }, 4000);
        Assert.InRange(sharp.Count(t => t == 1) / 4000.0, 0.87, 0.93);
    }

    [Fact]
    public void Top_k_and_top_p_remove_the_tail_as_transformers_does()
    {
        var probabilities = new[] { 0.6f, 0.3f, 0.1f };
        var topK = Draw(probabilities, new GenerationOptions { Temperature = 1, TopK = 2, Seed = 1 }, 2000);
        Assert.DoesNotContain(2L, topK);
        Assert.Contains(1L, topK);
        // Sorted ascending the cumulative mass is 0.1, 0.4, 1.0; top_p 0.8 drops tokens with cumulative ≤ 0.2 (token 2 only).
        var topP = Draw(probabilities, new GenerationOptions { Temperature = 1, TopP = 0.8, Seed = 1 }, 2000);
        Assert.DoesNotContain(2L, topP);
        Assert.Contains(1L, topP);
        // top_p 0.5 drops everything with cumulative ≤ 0.5: only the best token remains.
        Assert.All(Draw(probabilities, new GenerationOptions { Temperature = 1, TopP = 0.5, Seed = 1 }, 200), t => Assert.Equal(0, t));
    }

    [Fact]
    public void The_same_seed_samples_the_same_tokens()
    {
        var options = new GenerationOptions { Temperature = 1.0, Seed = 42 };
        Assert.Equal(Draw(new[] { 0.3f, 0.3f, 0.4f }, options, 50), Draw(new[] { 0.3f, 0.3f, 0.4f }, options, 50));
        Assert.NotEqual(Draw(new[] { 0.3f, 0.3f, 0.4f }, options, 50), Draw(new[] { 0.3f, 0.3f, 0.4f }, options with { Seed = 43 }, 50));
    }
}
