using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Tests.Modeling;
using static TorchSharp.torch;

namespace FedLlm.Tests.Generation;

/// <summary>
/// The fast decode path (logits of the last position only, grouped-query attention over the cache without repeat_kv,
/// the signed-sine rotary tables) against the plainest greedy loop there is: the whole sequence through
/// <see cref="LlamaForCausalLM.Forward"/> again for every new token, no cache, argmax of the last row.
/// </summary>
public class GreedyDecodingTests
{
    /// <summary>Greedy continuation by full recomputation: no cache, no padding, no shortcuts.</summary>
    static long[] RecomputedGreedy(LlamaForCausalLM model, long[] prompt, int newTokens)
    {
        using var _ = no_grad();
        var ids = prompt.ToList();
        for (int i = 0; i < newTokens; i++)
        {
            using var input = tensor(ids.ToArray(), new long[] { 1, ids.Count });
            using var logits = model.Forward(input);                         // (1, T, V)
            using var last = logits.select(1, ids.Count - 1);                // (1, V)
            using var next = last.argmax(-1);
            ids.Add(next.item<long>());
        }
        return ids.Skip(prompt.Length).ToArray();
    }

    [Theory]
    [InlineData(2, null)]   // grouped-query: 4 query heads over 2 key/value heads
    [InlineData(1, null)]   // multi-query
    [InlineData(4, null)]   // plain multi-head: the repeat_kv-free path is not taken
    [InlineData(2, 5)]      // Mistral sliding window shorter than prompt + continuation: the decode step gets a mask
    public void Batched_generation_with_the_cache_gives_the_tokens_of_full_recomputation(int kvHeads, int? window)
    {
        // Prepare: std 0.3 and embedding std 1 so that continuations vary (weak layers repeat the last token)
        var config = TinyModels.Llama(false, kvHeads, window is null ? ModelFamily.Llama : ModelFamily.Mistral, window);
        using var model = LlamaForCausalLM.CreateRandom(config, seed: 11, std: 0.3, embeddingStd: 1.0);
        long[][] prompts = [[3, 14, 15, 92, 65, 35], [89, 79], [32, 38, 46, 26]]; // unequal lengths: left padding
        const int newTokens = 12;
        var expected = prompts.Select(p => RecomputedGreedy(model, p, newTokens)).ToList();

        // Execute: one batch through TextGenerator (the path of fedllm generate)
        var generated = new TextGenerator(model, new IdTokenizer(config.VocabSize))
            .GenerateIds(prompts, new GenerationOptions { MaxNewTokens = newTokens });

        // Assert: identical tokens, and continuations varied enough for the comparison to mean something
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(expected[i], generated[i].ToArray());
        Assert.True(expected.Sum(e => e.Distinct().Count()) >= prompts.Length * 4, "continuations too uniform to compare");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]   // tied head: the embedding matrix as the head
    public void Batch_one_decoding_through_the_row_split_products_gives_the_tokens_of_full_recomputation(bool tied)
    {
        // Prepare: one fp32 prompt, so every decode step is a single row and its projections and head go through
        // DecodeLinear (an even vocabulary, so the head splits too); recomputation projects whole prompts with linear.
        // bf16 single rows stay on linear (DecodeLinearTests), so its decode path is the one it was.
        var config = TinyModels.Llama(tied) with { VocabSize = 96 };
        using var model = LlamaForCausalLM.CreateRandom(config, seed: 12, std: 0.3, embeddingStd: 1.0);
        long[] prompt = [3, 14, 15, 92, 65, 35];
        const int newTokens = 16;
        var expected = RecomputedGreedy(model, prompt, newTokens);

        // Execute
        var generated = new TextGenerator(model, new IdTokenizer(config.VocabSize))
            .GenerateIds([prompt], new GenerationOptions { MaxNewTokens = newTokens });

        // Assert
        Assert.Equal(expected, generated[0].ToArray());
        Assert.True(expected.Distinct().Count() >= 4, "continuation too uniform to compare");
    }

    [Fact]
    public void Rotary_apply_with_the_signed_sine_equals_rotate_half_bit_for_bit()
    {
        // Prepare: rotate_half written out as transformers does: x·cos + cat(−x₂, x₁)·sin
        var config = TinyModels.Llama();
        using var rotary = new RotaryEmbedding(config);
        using var generator = new Generator(5);
        using var x = randn(new long[] { 2, 4, 3, config.HeadDim }, generator: generator);   // (B, h, T, d)
        using var positions = tensor(new long[] { 0, 7, 19, 2, 3, 4 }, new long[] { 2, 3 });
        var (cos, signedSin) = rotary.Tables(positions, ScalarType.Float32);
        using var _cos = cos;
        using var _signedSin = signedSin;
        long half = config.HeadDim / 2;
        using var frequencies = positions.to(ScalarType.Float32).unsqueeze(-1) * rotary.InverseFrequencies; // (B, T, d/2)
        using var sin = cat(new[] { frequencies, frequencies }, -1).unsqueeze(1).sin();                     // (B, 1, T, d)
        using var rotated = cat(new[] { x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half) }, -1);
        using var expected = x * cos + rotated * sin;

        // Execute
        using var actual = RotaryEmbedding.Apply(x, cos, signedSin);

        // Assert: the same bits, and a rotation that did something
        Assert.True(actual.eq(expected).all().item<bool>());
        Assert.False(actual.allclose(x, rtol: 0, atol: 1e-3));
    }
}
