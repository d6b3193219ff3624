using FedLlm.Modeling;
using static TorchSharp.torch;

namespace FedLlm.Tests.Modeling;

public class LlamaModelTests
{
    static Tensor Ids(params long[][] rows) => tensor(rows.SelectMany(r => r).ToArray(), new long[] { rows.Length, rows[0].Length });

    [Fact]
    public void Later_tokens_do_not_change_earlier_logits()
    {
        using var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(), seed: 1, std: 0.2);
        using var _ = no_grad();
        using var a = model.Forward(Ids(new long[] { 5, 9, 13, 2, 40, 41 }));
        using var b = model.Forward(Ids(new long[] { 5, 9, 13, 2, 77, 3 }));
        Assert.True(a.narrow(1, 0, 4).allclose(b.narrow(1, 0, 4), rtol: 0, atol: 1e-6));
        Assert.False(a.narrow(1, 4, 2).allclose(b.narrow(1, 4, 2), rtol: 0, atol: 1e-3));
    }

    [Theory]
    [InlineData(false, 2, null)]
    [InlineData(true, 1, null)]
    [InlineData(false, 4, 3)]
    public void Incremental_decoding_with_the_cache_equals_a_full_forward(bool tied, int kvHeads, int? window)
    {
        var config = TinyModels.Llama(tied, kvHeads, window is null ? ModelFamily.Llama : ModelFamily.Mistral, window);
        using var model = LlamaForCausalLM.CreateRandom(config, seed: 2, std: 0.2);
        using var _ = no_grad();
        using var ids = Ids(new long[] { 1, 8, 22, 9, 60, 4, 33, 2 });
        using var full = model.Forward(ids);
        using var cache = new KvCache(config, 1, 16, ScalarType.Float32);
        using var prefill = model.Forward(ids.narrow(1, 0, 5), cache: cache);
        Assert.True(prefill.allclose(full.narrow(1, 0, 5), rtol: 0, atol: 1e-5));
        for (int t = 5; t < 8; t++)
        {
            using var step = model.Forward(ids.narrow(1, t, 1), cache: cache);
            Assert.True(step.allclose(full.narrow(1, t, 1), rtol: 0, atol: 1e-5), $"position {t}");
        }
    }

    [Fact]
    public void Left_padding_with_positions_from_the_mask_leaves_real_tokens_unchanged()
    {
        using var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(), seed: 3, std: 0.2);
        using var _ = no_grad();
        using var alone = model.Forward(Ids(new long[] { 7, 8, 9 }));
        using var batch = Ids(new long[] { 0, 0, 7, 8, 9 }, new long[] { 4, 5, 6, 7, 8 });
        using var mask = Ids(new long[] { 0, 0, 1, 1, 1 }, new long[] { 1, 1, 1, 1, 1 });
        using var positions = (mask.cumsum(1) - 1).clamp_min(0);
        using var padded = model.Forward(batch, mask, positions);
        Assert.False(padded.isnan().any().item<bool>());
        Assert.True(padded[0].narrow(0, 2, 3).allclose(alone[0], rtol: 0, atol: 1e-5));
    }

    [Fact]
    public void Loss_ignores_labels_of_minus_100_and_matches_a_manual_cross_entropy()
    {
        using var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(), seed: 4, std: 0.2);
        using var _ = no_grad();
        using var ids = Ids(new long[] { 3, 14, 15, 92, 65 });
        using var labels = Ids(new long[] { -100, -100, 15, 92, 65 });
        using var loss = model.Loss(ids, labels);
        using var logits = model.Forward(ids);
        using var logProbs = logits.log_softmax(-1);
        // position t predicts token t+1; labels at 0 and 1 are ignored, so positions 1, 2, 3 predict 15, 92, 65.
        double expected = -(logProbs[0, 1, 15].item<float>() + logProbs[0, 2, 92].item<float>() + logProbs[0, 3, 65].item<float>()) / 3;
        Assert.Equal(expected, loss.item<float>(), 5);
    }

    [Fact]
    public void Unknown_model_type_and_missing_fields_are_named()
    {
        string dir = Directory.CreateTempSubdirectory().FullName;
        string path = Path.Combine(dir, "config.json");
        File.WriteAllText(path, """{"model_type": "gpt2", "hidden_size": 8}""");
        var e1 = Assert.Throws<ModelConfigException>(() => LlamaConfig.Load(path));
        Assert.Contains("gpt2", e1.Message);
        Assert.Contains(path, e1.Message);
        File.WriteAllText(path, """{"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2, "vocab_size": 10, "num_hidden_layers": 1}""");
        var e2 = Assert.Throws<ModelConfigException>(() => LlamaConfig.Load(path));
        Assert.Contains("intermediate_size", e2.Message);
        File.WriteAllText(path, """{"model_type": "llama", "hidden_size": "8"}""");
        var e3 = Assert.Throws<ModelConfigException>(() => LlamaConfig.Load(path));
        Assert.Contains("'hidden_size' must be an integer", e3.Message);
    }
}
