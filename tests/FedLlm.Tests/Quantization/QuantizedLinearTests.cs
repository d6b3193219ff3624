using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Quantization;

/// <summary>
/// The quantised base layers compute exactly what a dense layer holding their dequantised weight computes, forward and
/// backward (input gradient through the custom autograd node), and LoRA wraps them unchanged.
/// </summary>
public class QuantizedLinearTests
{
    static QuantizedLinear Build(string kind, Tensor weight, Tensor? bias, ScalarType dtype)
    {
        long outF = weight.shape[0], inF = weight.shape[1];
        QuantizedLinear layer = kind == "int8"
            ? new Int8Linear(inF, outF, bias is not null, dtype)
            : new Nf4Linear(inF, outF, bias is not null, dtype, doubleQuant: kind == "nf4dq");
        layer.LoadWeight(weight);
        if (bias is not null) using (no_grad()) layer.Bias!.copy_(bias);
        return layer;
    }

    [Theory]
    [InlineData("int8")]
    [InlineData("nf4")]
    [InlineData("nf4dq")]
    public void Forward_and_input_gradient_equal_a_dense_layer_with_the_dequantised_weight(string kind)
    {
        // Prepare: 96 × 40 = 3840 weights (60 NF4 blocks), a bias, and an input that requires grad (a middle layer).
        var g = new Generator(11);
        using var weight = randn(new long[] { 40, 96 }, generator: g) * 0.1;
        using var bias = randn(new long[] { 40 }, generator: g);
        using var layer = Build(kind, weight, bias, ScalarType.Float32);
        using var dense = new DenseLinear(96, 40, hasBias: true, ScalarType.Float32);
        using (no_grad())
        {
            using var w = layer.DequantizedWeight(ScalarType.Float32);
            dense.Weight.copy_(w);
            dense.Bias!.copy_(bias);
            // The quantised weight differs from the original (else this test could not tell the layers apart).
            Assert.True((w - weight).abs().max().item<float>() > 1e-4);
        }
        using var x0 = randn(new long[] { 3, 5, 96 }, generator: g);
        using var upstream = randn(new long[] { 3, 5, 40 }, generator: g);

        // Execute
        using var x1 = x0.clone().requires_grad_(true);
        using var y1 = layer.forward(x1);
        using (var l1 = (y1 * upstream).sum()) l1.backward();
        using var x2 = x0.clone().requires_grad_(true);
        using var y2 = dense.forward(x2);
        using (var l2 = (y2 * upstream).sum()) l2.backward();

        // Assert: same kernels on the same numbers, so exact.
        Assert.Equal(0, y1.ne(y2).sum().item<long>());
        Assert.Equal(0, x1.grad!.ne(x2.grad!).sum().item<long>());
        Assert.DoesNotContain(layer.parameters(), p => p.requires_grad);
    }

    [Theory]
    [InlineData("int8")]
    [InlineData("nf4dq")]
    public void Lora_over_a_quantised_base_gets_the_gradients_of_lora_over_its_dense_equivalent(string kind)
    {
        var g = new Generator(12);
        using var weight = randn(new long[] { 24, 64 }, generator: g) * 0.1;
        var options = new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0 };
        var quantizedBase = Build(kind, weight, null, ScalarType.Float32);
        var denseBase = new DenseLinear(64, 24, hasBias: false, ScalarType.Float32);
        using (no_grad()) { using var w = quantizedBase.DequantizedWeight(ScalarType.Float32); denseBase.Weight.copy_(w); }
        using var lora1 = new LoraLinear(quantizedBase, options, new Generator(1));
        using var lora2 = new LoraLinear(denseBase, options, new Generator(1));
        using (no_grad())
        {
            using var b = randn(lora1.LoraB.shape, generator: g);
            lora1.LoraB.copy_(b);
            lora2.LoraB.copy_(b);
        }
        using var x = randn(new long[] { 2, 7, 64 }, generator: g);
        // Two stacked layers, so the first one's A needs the input gradient of the second's base.
        using var y1 = lora1.forward(x);
        using var z1 = lora1.forward(y1.narrow(2, 0, 24).repeat(1, 1, 3).narrow(2, 0, 64));
        using (var l = z1.square().sum()) l.backward();
        using var y2 = lora2.forward(x);
        using var z2 = lora2.forward(y2.narrow(2, 0, 24).repeat(1, 1, 3).narrow(2, 0, 64));
        using (var l = z2.square().sum()) l.backward();

        Assert.True(lora1.LoraA.grad!.allclose(lora2.LoraA.grad!, rtol: 1e-5, atol: 1e-5), "A");
        Assert.True(lora1.LoraB.grad!.allclose(lora2.LoraB.grad!, rtol: 1e-5, atol: 1e-5), "B");
        Assert.True(lora1.LoraA.grad!.abs().max().item<float>() > 0);
        Assert.Equal(ScalarType.Float32, lora1.LoraA.dtype);
    }

    [Fact]
    public void Merging_into_a_quantised_base_is_refused_with_the_way_out()
    {
        using var weight = ones(8, 64);
        var layer = Build("nf4dq", weight, null, ScalarType.Float32);
        using var lora = new LoraLinear(layer, new LoraOptions { Rank = 2, Alpha = 2, Dropout = 0 });
        var e = Assert.Throws<NotSupportedException>(() => lora.Merge());
        Assert.Contains("--base-dtype fp32 or bf16", e.Message);
        Assert.False(lora.Merged);
    }

    [Fact]
    public void Quantised_buffers_use_keys_no_checkpoint_has_and_a_wrong_shape_names_itself()
    {
        using var weight = ones(8, 64);
        using var int8 = Build("int8", weight, ones(8), ScalarType.Float32);
        using var nf4 = Build("nf4dq", weight, null, ScalarType.Float32);
        Assert.Equal(new[] { "bias", "weight_codes", "weight_scales" }, int8.state_dict().Keys.Order());
        Assert.Equal(new[] { "weight_absmax_codes", "weight_absmax_offset", "weight_absmax_scales", "weight_nf4" }, nf4.state_dict().Keys.Order());
        using var fresh = new Int8Linear(64, 8, false, ScalarType.Float32);
        using var wrong = ones(64, 8);
        var e = Assert.Throws<ArgumentException>(() => fresh.LoadWeight(wrong));
        Assert.Contains("[8, 64] cannot take a weight of shape [64, 8]", e.Message);
    }
}

public class BaseWeightsTests
{
    [Theory]
    [InlineData("fp32", BasePrecision.Fp32, ScalarType.Float32)]
    [InlineData("BF16", BasePrecision.Bf16, ScalarType.BFloat16)]
    [InlineData("int8", BasePrecision.Int8, ScalarType.BFloat16)]
    [InlineData("nf4", BasePrecision.Nf4, ScalarType.BFloat16)]
    public void Parses_each_precision_with_its_default_compute_dtype(string text, BasePrecision precision, ScalarType compute)
    {
        var weights = BaseWeights.Parse(text);
        Assert.Equal(precision, weights.Precision);
        Assert.Equal(compute, weights.ComputeDtype);
    }

    [Fact]
    public void An_unknown_precision_names_the_flag_and_the_choices()
    {
        var e = Assert.Throws<ArgumentException>(() => BaseWeights.Parse("fp8"));
        Assert.Equal("--base-dtype 'fp8' is not one of fp32, bf16, int8 or nf4", e.Message);
    }
}
