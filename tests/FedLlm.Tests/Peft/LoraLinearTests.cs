using FedLlm.Modeling;
using FedLlm.Peft;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Peft;

public class LoraLinearTests
{
    static LlamaForCausalLM AdaptedModel(out IReadOnlyList<LoraSite> sites, ScalarType dtype = ScalarType.Float32)
    {
        var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(), seed: 5, std: 0.2, dtype: dtype);
        sites = LoraInjector.Inject(model, new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0 }, new Generator(11));
        // B = 0 would make every merge check pass trivially; give B values so the adapter changes the output.
        using var _ = no_grad();
        var g = new Generator(12);
        foreach (var site in sites)
        {
            using var values = randn(site.Layer.LoraB.shape, generator: g) * 0.1;
            site.Layer.LoraB.copy_(values);
        }
        return model;
    }

    static readonly Tensor Input = tensor(new long[] { 1, 5, 9, 30, 2, 77 }, new long[] { 1, 6 });

    [Fact]
    public void Fresh_adapter_starts_at_the_base_model_and_only_adapters_train()
    {
        using var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(), seed: 5, std: 0.2);
        using var _ = no_grad();
        using var before = model.Forward(Input);
        var sites = LoraInjector.Inject(model, new LoraOptions { Rank = 4, Alpha = 8 }, new Generator(1));
        model.eval();
        using var after = model.Forward(Input);
        Assert.True(before.allclose(after, rtol: 0, atol: 0));
        Assert.Equal(2 * 7 * 2, sites.Count * 2);
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        Assert.Equal(sites.Count * 2, trainable.Count);
        Assert.All(trainable, n => Assert.Matches(@"\.lora_[AB]\.weight$", n));
        Assert.Contains("model.layers.0.self_attn.q_proj.lora_A.weight", trainable);
        Assert.Contains("model.layers.1.mlp.down_proj.base_layer.weight", model.named_parameters().Select(p => p.name));
        // A is Kaiming-uniform with bound 1/sqrt(in): non-zero and inside the bound.
        var a = sites[0].Layer.LoraA;
        Assert.True(a.abs().max().item<float>() <= 1 / Math.Sqrt(32) + 1e-6);
        Assert.True(a.abs().max().item<float>() > 0.5 / Math.Sqrt(32));
    }

    [Fact]
    public void Merged_output_equals_unmerged_and_unmerge_restores_the_base()
    {
        using var model = AdaptedModel(out _);
        model.eval();
        using var noGrad = no_grad();
        using var adapted = model.Forward(Input);
        LoraInjector.SetEnabled(model, false);
        using var baseOnly = model.Forward(Input);
        LoraInjector.SetEnabled(model, true);
        Assert.False(adapted.allclose(baseOnly, rtol: 0, atol: 1e-3), "the adapter must change the output");
        LoraInjector.MergeAll(model);
        using var merged = model.Forward(Input);
        Assert.True(merged.allclose(adapted, rtol: 0, atol: 1e-5));
        LoraInjector.UnmergeAll(model);
        using var unmerged = model.Forward(Input);
        Assert.True(unmerged.allclose(adapted, rtol: 0, atol: 1e-5));
        LoraInjector.SetEnabled(model, false);
        using var baseAgain = model.Forward(Input);
        Assert.True(baseAgain.allclose(baseOnly, rtol: 0, atol: 1e-5));
    }

    [Fact]
    public void Adapter_gradients_match_finite_differences()
    {
        // float64 so that the central difference is accurate to well below the tolerance.
        using var model = AdaptedModel(out var sites, ScalarType.Float64);
        model.eval();
        using var labels = tensor(new long[] { -100, 5, 9, 30, 2, 77 }, new long[] { 1, 6 });
        using var loss = model.Loss(Input, labels);
        loss.backward();
        var checks = new[] { (sites[0].Layer.LoraA, 3L), (sites[0].Layer.LoraB, 7L), (sites[^1].Layer.LoraA, 0L), (sites[^1].Layer.LoraB, 20L) };
        using var _ = no_grad();
        foreach (var (parameter, flatIndex) in checks)
        {
            using var flat = parameter.view(-1);
            double analytic = parameter.grad!.view(-1)[flatIndex].item<double>();
            double original = flat[flatIndex].item<double>();
            const double h = 1e-6;
            flat[flatIndex] = original + h;
            double up; using (var l = model.Loss(Input, labels)) up = l.item<double>();
            flat[flatIndex] = original - h;
            double down; using (var l = model.Loss(Input, labels)) down = l.item<double>();
            flat[flatIndex] = original;
            double numeric = (up - down) / (2 * h);
            Assert.True(Math.Abs(analytic - numeric) <= 1e-6 + 1e-4 * Math.Abs(numeric), $"analytic {analytic} vs numeric {numeric}");
            Assert.NotEqual(0.0, analytic);
        }
    }
}
