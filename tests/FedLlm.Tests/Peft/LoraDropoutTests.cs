using FedLlm.Peft;
using FedLlm.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Peft;

/// <summary>LoRA dropout: the counter-based keep-mask and the down projection that keeps the mask's key, not the mask or
/// the dropped input.</summary>
public class LoraDropoutTests
{
    [Fact]
    public void The_down_projection_of_a_fixed_mask_matches_a_hand_computed_case()
    {
        // Prepare: p = 0.5 (scale 2), x = [1 2 3 4], a key whose mask drops the second element (the first such key, found
        // through the reference uniforms), A picks elements 1+3 and 2+4
        using var x = tensor(new float[] { 1, 2, 3, 4 }, [1, 4]).requires_grad_(true);
        ulong threshold = DropoutMask.Threshold(0.5);
        bool[] pattern = [true, false, true, true];
        ulong key = Enumerable.Range(0, 10_000).Select(k => (ulong)k)
            .First(k => Enumerable.Range(0, 4).All(i => (DropoutMask.Uniform(k, i) >= threshold) == pattern[i]));
        var dropout = new DropoutKey(key, 0.5);
        using var a = tensor(new float[] { 1, 0, 1, 0, 0, 1, 0, 1 }, [2, 4]).requires_grad_(true);

        // Execute
        using var down = LoraDownProjection.Apply(x, dropout, a);
        using var g = tensor(new float[] { 1, 2 }, [1, 2]);
        down.backward([g]);

        // Assert: dropped = [2 0 6 8]; down = [2+6, 0+8]; ∂A = gᵀ·dropped; ∂x = (g·A) ⊙ keep · 2 = [1 2 1 2] ⊙ [1 0 1 1] · 2
        using var keep = dropout.Keep(x);
        Assert.Equal(pattern, keep.data<bool>().ToArray());
        Assert.Equal(new float[] { 8, 8 }, down.data<float>().ToArray());
        Assert.Equal(new float[] { 2, 0, 6, 8, 4, 0, 12, 16 }, a.grad!.data<float>().ToArray());
        Assert.Equal(new float[] { 2, 0, 2, 4 }, x.grad!.data<float>().ToArray());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void The_node_equals_the_plain_ops_with_the_same_mask(bool inputNeedsGradient)
    {
        // Prepare: the plain version autograd would build, x · keep · 1/(1−p) then linear, on the same mask
        const double p = 0.3;
        using var generator = new Generator(17);
        using var x0 = randn([2, 3, 40], generator: generator);
        using var a0 = randn([4, 40], generator: generator);
        using var g = randn([2, 3, 4], generator: generator);
        var dropout = DropoutMask.Draw(p, generator);
        using var keep = dropout.Keep(x0);
        using var x1 = x0.clone().requires_grad_(inputNeedsGradient);
        using var a1 = a0.clone().requires_grad_(true);
        using var x2 = x0.clone().requires_grad_(inputNeedsGradient);
        using var a2 = a0.clone().requires_grad_(true);

        // Execute
        using var plain = nn.functional.linear((x1 * keep).mul(1.0 / (1.0 - p)), a1);
        plain.backward([g]);
        using var fused = LoraDownProjection.Apply(x2, dropout, a2);
        fused.backward([g]);

        // Assert: forward and gradients to float rounding (the node scales the rank-r side, not the input)
        Assert.True(plain.allclose(fused, rtol: 1e-5, atol: 1e-6), $"forward differs by {(plain - fused).abs().max().item<float>()}");
        using var maskedOnly = x0 * keep;
        using var unscaled = nn.functional.linear(maskedOnly, a0);
        Assert.False(fused.allclose(unscaled, rtol: 1e-3, atol: 1e-3), "the 1/(1−p) must be applied");
        Assert.True(a1.grad!.allclose(a2.grad!, rtol: 1e-5, atol: 1e-5));
        if (inputNeedsGradient) Assert.True(x1.grad!.allclose(x2.grad!, rtol: 1e-5, atol: 1e-6));
        else Assert.Null(x2.grad);
        Assert.False(keep.all().item<bool>(), "the mask must drop something, or the test checks nothing");
    }

    [Fact]
    public void A_bf16_input_without_a_mask_is_cast_to_A_and_its_gradient_cast_back_as_a_hand_computed_case()
    {
        // Prepare: x in bf16 (exact small integers), fp32 A summing elements 1+3 and 2+4, no dropout
        using var x = tensor(new float[] { 1, 2, 3, 4 }, [1, 4]).to(ScalarType.BFloat16).requires_grad_(true);
        using var a = tensor(new float[] { 1, 0, 1, 0, 0, 1, 0, 1 }, [2, 4]).requires_grad_(true);

        // Execute
        using var down = LoraDownProjection.Apply(x, null, a);
        using var g = tensor(new float[] { 1, 2 }, [1, 2]);
        down.backward([g]);

        // Assert: down = [1+3, 2+4] in fp32; ∂A = gᵀ·x; ∂x = g·A = [1 2 1 2], in x's dtype
        Assert.Equal(ScalarType.Float32, down.dtype);
        Assert.Equal(new float[] { 4, 6 }, down.data<float>().ToArray());
        Assert.Equal(new float[] { 1, 2, 3, 4, 2, 4, 6, 8 }, a.grad!.data<float>().ToArray());
        Assert.Equal(ScalarType.BFloat16, x.grad!.dtype);
        using var xGrad = x.grad!.to(ScalarType.Float32);
        Assert.Equal(new float[] { 1, 2, 1, 2 }, xGrad.data<float>().ToArray());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void On_a_bf16_input_the_node_equals_the_plain_cast_dropout_and_linear(bool dropping)
    {
        // Prepare: what LoraLinear built before: x.to(fp32), · keep, · 1/(1−p), linear; x also feeds a frozen matmul,
        // as the base layer's input does, so its gradient is a sum of two
        const double p = 0.1;
        using var generator = new Generator(23);
        using var x0 = randn([2, 5, 48], generator: generator).to(ScalarType.BFloat16);
        using var w = randn([8, 48], generator: generator).to(ScalarType.BFloat16);
        using var a0 = randn([4, 48], generator: generator);
        using var g = randn([2, 5, 4], generator: generator);
        using var gBase = randn([2, 5, 8], generator: generator).to(ScalarType.BFloat16);
        DropoutKey? dropout = dropping ? DropoutMask.Draw(p, generator) : null;
        using var keep = dropout?.Keep(x0);
        double scale = dropping ? 1.0 / (1.0 - p) : 1.0;
        using var x1 = x0.clone().requires_grad_(true);
        using var a1 = a0.clone().requires_grad_(true);
        using var x2 = x0.clone().requires_grad_(true);
        using var a2 = a0.clone().requires_grad_(true);

        // Execute
        using var x32 = x1.to(ScalarType.Float32);
        using var dropped = keep is null ? x32.alias() : (x32 * keep).mul(scale);
        using var plain = nn.functional.linear(dropped, a1);
        using var base1 = nn.functional.linear(x1, w);
        autograd.backward([plain, base1], [g, gBase]);
        using var fused = LoraDownProjection.Apply(x2, dropout, a2);
        using var base2 = nn.functional.linear(x2, w);
        autograd.backward([fused, base2], [g, gBase]);

        // Assert: without dropout the same ops, so bit for bit; with it the factor is applied on the rank-r side, so fp32
        // results agree to float rounding and ∂x (rounded to bf16 after the sum) to one bf16 step
        Assert.Equal(ScalarType.BFloat16, x2.grad!.dtype);
        if (!dropping)
        {
            Assert.True(plain.eq(fused).all().item<bool>());
            Assert.True(a1.grad!.eq(a2.grad!).all().item<bool>(), "∂A");
            Assert.True(x1.grad!.eq(x2.grad!).all().item<bool>(), "∂x");
        }
        else
        {
            Assert.True(plain.allclose(fused, rtol: 1e-5, atol: 1e-5));
            Assert.True(a1.grad!.allclose(a2.grad!, rtol: 1e-5, atol: 1e-5), "∂A");
            using var xGrad1 = x1.grad!.to(ScalarType.Float32);
            using var xGrad2 = x2.grad!.to(ScalarType.Float32);
            Assert.True(xGrad1.allclose(xGrad2, rtol: 1e-2, atol: 1e-2), "∂x");
        }
        if (keep is not null) Assert.False(keep.all().item<bool>(), "the mask must drop something, or the test checks nothing");
    }

    [Fact]
    public void The_mask_is_the_reference_function_of_key_and_index_whatever_the_thread_count()
    {
        // Prepare: an odd size over several parallel blocks
        const double p = 0.05;
        using var like = empty([3, 200_001]);
        int threads = torch.get_num_threads();

        // Execute: the same generator state, drawn with 1 and with 2 threads
        using var g1 = new Generator(99);
        using var g2 = new Generator(99);
        using var keyDraw = new Generator(99);
        Tensor one, two;
        try
        {
            torch.set_num_threads(1);
            one = DropoutMask.Keep(like, p, g1);
            torch.set_num_threads(2);
            two = DropoutMask.Keep(like, p, g2);
        }
        finally
        {
            torch.set_num_threads(threads);
        }
        using var __ = one;
        using var ___ = two;

        // Assert: equal masks, each element the reference uniform against ⌈p·2³²⌉, and a keep rate of 1 − p
        Assert.True(one.eq(two).all().item<bool>());
        using var drawn = randint(0, long.MaxValue, [1], ScalarType.Int64, generator: keyDraw);
        ulong key = (ulong)drawn.item<long>();
        var flat = one.flatten().data<bool>().ToArray();
        ulong threshold = DropoutMask.Threshold(p);
        for (long i = 0; i < flat.Length; i += 997)
            Assert.Equal(DropoutMask.Uniform(key, i) >= threshold, flat[i]);
        Assert.Equal(DropoutMask.Uniform(key, flat.Length - 1) >= threshold, flat[^1]);
        double kept = flat.Count(k => k) / (double)flat.Length;
        double sigma = Math.Sqrt(p * (1 - p) / flat.Length);
        Assert.InRange(kept, 1 - p - 5 * sigma, 1 - p + 5 * sigma);
        Assert.Equal(214748365UL, DropoutMask.Threshold(0.05)); // ⌈0.05 · 2³²⌉ = ⌈214748364.8⌉
    }

    [Theory]
    [InlineData(ScalarType.Float32, 3 * 7)]             // fewer than one vector of 8, and an odd tail
    [InlineData(ScalarType.Float32, (1 << 18) + 13)]    // across the first parallel block's end
    [InlineData(ScalarType.BFloat16, (1 << 18) + 13)]
    [InlineData(ScalarType.Float16, 1001)]
    public void Zeroing_in_one_pass_equals_multiplying_by_the_keys_mask(ScalarType dtype, int elements)
    {
        // Prepare: values without zeros, so a dropped element is told apart from a kept one by its value
        using var generator = new Generator(31);
        using var uniform = rand([elements], generator: generator);
        using var x = (uniform + 0.5).to(dtype);
        var dropout = DropoutMask.Draw(0.3, generator);

        // Execute
        using var zeroed = DropoutMask.Zeroed(x, dropout);

        // Assert: x's own values where the mask keeps, zeros where it drops, and something dropped
        using var keep = dropout.Keep(x);
        using var expected = x * keep;
        Assert.Equal(dtype, zeroed.dtype);
        Assert.True(zeroed.eq(expected).all().item<bool>());
        Assert.False(keep.all().item<bool>(), "the mask must drop something, or the test checks nothing");
    }

    [Fact]
    public void Zeroing_a_strided_input_goes_through_the_mask_with_the_same_result()
    {
        // Prepare: a transposed (non-contiguous) view, which the one-pass kernel does not read
        using var generator = new Generator(32);
        using var base0 = rand([40, 30], generator: generator);
        using var x = base0.t();
        var dropout = DropoutMask.Draw(0.5, generator);

        // Execute
        using var zeroed = DropoutMask.Zeroed(x, dropout);

        // Assert: the mask is of x's logical element order
        using var keep = dropout.Keep(x);
        using var expected = x * keep;
        Assert.True(zeroed.eq(expected).all().item<bool>());
    }

    [Fact]
    public void Successive_masks_differ_and_a_reseeded_generator_repeats_them()
    {
        using var like = empty([1000]);
        using var g = new Generator(5);
        using var first = DropoutMask.Keep(like, 0.5, g);
        using var second = DropoutMask.Keep(like, 0.5, g);
        g.manual_seed(5);
        using var again = DropoutMask.Keep(like, 0.5, g);

        Assert.False(first.eq(second).all().item<bool>());
        Assert.True(first.eq(again).all().item<bool>());
        Assert.Throws<ArgumentOutOfRangeException>(() => DropoutMask.Keep(like, 1.0, g));
    }

    [Fact]
    public void A_training_LoRA_layer_applies_the_mask_its_generator_draws_and_dropout_0_draws_none()
    {
        // Prepare: a dense base, non-zero B so the adapter shows, dropout 0.25
        using var weight = randn([6, 10], generator: new Generator(1));
        var baseLayer = DenseLinear.Create(10, 6, hasBias: false, ScalarType.Float32, CPU);
        using (no_grad()) baseLayer.OverwriteWeight(weight);
        using var lora = new LoraLinear(baseLayer, new LoraOptions { Rank = 2, Alpha = 4, Dropout = 0.25 }, new Generator(2));
        using (no_grad()) lora.LoraB.copy_(randn([6, 2], generator: new Generator(3)));
        lora.train();
        using var x = randn([3, 10], generator: new Generator(4));

        // Execute
        lora.DropoutGenerator = new Generator(8);
        using var output = lora.forward(x);
        using var replay = new Generator(8);
        using var keep = DropoutMask.Keep(x, 0.25, replay);
        using var expected = x.matmul(weight.t()) + (x * keep).mul(1 / 0.75).matmul(lora.LoraA.t()).matmul(lora.LoraB.t()) * lora.Scaling;
        lora.eval();
        using var noDropout = lora.forward(x);
        using var withoutMask = x.matmul(weight.t()) + x.matmul(lora.LoraA.t()).matmul(lora.LoraB.t()) * lora.Scaling;

        // Assert
        Assert.True(output.allclose(expected, rtol: 1e-5, atol: 1e-5));
        Assert.False(output.allclose(withoutMask, rtol: 1e-3, atol: 1e-3), "the mask must change the output");
        Assert.True(noDropout.allclose(withoutMask, rtol: 1e-5, atol: 1e-5));
    }
}
