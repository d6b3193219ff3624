using FedLlm.Peft;
using FedLlm.Quantization;
using static TorchSharp.torch;

namespace FedLlm.Tests.Peft;

/// <summary>Training over a bf16 base: the adapter computes in bf16 from its fp32 master weights.</summary>
public class LoraBf16TrainingTests
{
    [Theory]
    [InlineData(0.0)]
    [InlineData(0.1)]
    public void Gradients_reach_the_fp32_weights_and_equal_the_bf16_reference_computation(double dropout)
    {
        // Prepare: a bf16 base with an adapter whose B is non-zero, the same mask for the layer and the reference
        using var weight = randn([24, 40], generator: new Generator(1)).to(ScalarType.BFloat16);
        var baseLayer = DenseLinear.Create(40, 24, hasBias: false, ScalarType.BFloat16, CPU);
        using (no_grad()) baseLayer.OverwriteWeight(weight);
        using var lora = new LoraLinear(baseLayer, new LoraOptions { Rank = 4, Alpha = 8, Dropout = dropout }, new Generator(2));
        using (no_grad()) lora.LoraB.copy_(randn([24, 4], generator: new Generator(3)) * 0.1);
        lora.train();
        using var x0 = randn([2, 6, 40], generator: new Generator(4)).to(ScalarType.BFloat16);
        using var upstream = randn([2, 6, 24], generator: new Generator(5)).to(ScalarType.BFloat16);
        using var x = x0.clone().requires_grad_(true);

        // Execute: the layer, then the reference: the same computation written out in bf16 from casts of A and B
        lora.DropoutGenerator = new Generator(6);
        using var output = lora.forward(x);
        output.backward([upstream]);
        using var gradA = lora.LoraA.grad!.clone();
        using var gradB = lora.LoraB.grad!.clone();
        using var a = lora.LoraA.detach().clone().requires_grad_(true);
        using var b = lora.LoraB.detach().clone().requires_grad_(true);
        using var xr = x0.clone().requires_grad_(true);
        using var keep = dropout > 0 ? DropoutMask.Keep(x0, dropout, new Generator(6)) : ones_like(x0, ScalarType.Bool);
        using var dropped = (xr * keep).mul(1 / (1 - dropout));
        using var reference = xr.matmul(weight.t())
            + dropped.matmul(a.to(ScalarType.BFloat16).t()).matmul(b.to(ScalarType.BFloat16).t()) * lora.Scaling;
        reference.backward([upstream]);

        // Assert: fp32 gradients on the fp32 weights, equal to the reference's; the output and ∂x in bf16
        Assert.Equal(ScalarType.Float32, lora.LoraA.dtype);
        Assert.Equal(ScalarType.Float32, gradA.dtype);
        Assert.Equal(ScalarType.Float32, gradB.dtype);
        Assert.Equal(ScalarType.BFloat16, output.dtype);
        Assert.Equal(ScalarType.BFloat16, x.grad!.dtype);
        Assert.True(gradA.abs().max().item<float>() > 0 && gradB.abs().max().item<float>() > 0, "no gradient to compare");
        // Computed in bf16, then widened: every value is a bf16 number (the fp32 path's products almost never are)
        using var roundTrip = gradA.to(ScalarType.BFloat16).to(ScalarType.Float32);
        Assert.True(roundTrip.eq(gradA).all().item<bool>(), "∂A was not computed in bf16");
        // bf16 rounds at other places than the reference (dropout's factor on the rank-r side), and a gradient is a sum
        // whose terms are larger than some results: a few bf16 steps of the largest value
        double toleranceA = 2e-2 * a.grad!.abs().max().item<float>(), toleranceB = 2e-2 * b.grad!.abs().max().item<float>();
        Assert.True(gradA.allclose(a.grad!, rtol: 1e-2, atol: toleranceA), $"∂A differs by up to {(gradA - a.grad!).abs().max().item<float>()} (max |∂A| {a.grad!.abs().max().item<float>()})");
        Assert.True(gradB.allclose(b.grad!, rtol: 1e-2, atol: toleranceB), $"∂B differs by up to {(gradB - b.grad!).abs().max().item<float>()} (max |∂B| {b.grad!.abs().max().item<float>()})");
        Assert.True(output.to(ScalarType.Float32).allclose(reference.to(ScalarType.Float32), rtol: 1e-2, atol: 1e-2), "output");
        if (dropout > 0) Assert.False(keep.all().item<bool>(), "the mask must drop something, or the test checks nothing");
    }

    [Theory]
    [InlineData(ScalarType.BFloat16, 2.0, true)]
    [InlineData(ScalarType.BFloat16, 0.5, true)]
    [InlineData(ScalarType.BFloat16, 5.656854249492381, false)] // rsLoRA: 16 / √8
    [InlineData(ScalarType.BFloat16, 1.1, false)]
    [InlineData(ScalarType.Float16, 5.656854249492381, false)]
    [InlineData(ScalarType.Float16, 0.125, true)]
    [InlineData(ScalarType.Float32, 5.656854249492381, true)]
    public void A_scaling_is_held_exactly_only_when_the_dtype_can(ScalarType dtype, double scaling, bool exact)
    {
        // Execute / Assert
        Assert.Equal(exact, LoraLinear.HoldsExactly(dtype, scaling));
    }

    [Theory]
    [InlineData(false)] // α 4, r 2: scaling 2, which bf16 holds
    [InlineData(true)]  // α 16, r 8, rsLoRA: scaling 16/√8, which bf16 cannot hold (as an alpha libtorch would round it)
    public void Inference_over_bf16_keeps_the_fp32_adapter_and_applies_the_scaling_as_PEFT_does(bool rsLora)
    {
        // Prepare
        var (lora, weight) = EvaluatingBf16Layer(rsLora
            ? new LoraOptions { Rank = 8, Alpha = 16, Dropout = 0, UseRsLora = true }
            : new LoraOptions { Rank = 2, Alpha = 4, Dropout = 0 });
        using var _ = lora;
        using var __ = weight;
        using var x = randn([64, 16], generator: new Generator(4)).to(ScalarType.BFloat16);

        // Execute
        using var output = ForwardWithoutGradients(lora, x);

        // Assert: bit for bit PEFT's result + lora_B(lora_A(x)) · scaling, the adapter in fp32 then cast, the product
        // out of place; with rsLoRA's scaling that differs from the alpha form
        using var baseOut = x.matmul(weight.t());
        using var adapter = x.to(ScalarType.Float32).matmul(lora.LoraA.t()).matmul(lora.LoraB.t()).to(ScalarType.BFloat16);
        using var peft = baseOut + adapter.mul(lora.Scaling);
        using var alphaForm = baseOut.add(adapter, lora.Scaling);
        Assert.Equal(!rsLora, peft.eq(alphaForm).all().item<bool>());
        Assert.True(output.eq(peft).all().item<bool>(), "the adapter or its scaling was not applied as PEFT applies them");
    }

    /// <summary>A 16 → 8 bf16 base with an adapter of <paramref name="options"/> whose B is non-zero, in eval mode.</summary>
    static (LoraLinear Lora, Tensor Weight) EvaluatingBf16Layer(LoraOptions options)
    {
        var weight = randn([8, 16], generator: new Generator(1)).to(ScalarType.BFloat16);
        var baseLayer = DenseLinear.Create(16, 8, hasBias: false, ScalarType.BFloat16, CPU);
        using (no_grad()) baseLayer.OverwriteWeight(weight);
        var lora = new LoraLinear(baseLayer, options, new Generator(2));
        using (no_grad()) lora.LoraB.copy_(randn([8, options.Rank], generator: new Generator(3)));
        lora.eval();
        return (lora, weight);
    }

    static Tensor ForwardWithoutGradients(LoraLinear lora, Tensor x)
    {
        using var noGrad = no_grad();
        return lora.forward(x);
    }
}
