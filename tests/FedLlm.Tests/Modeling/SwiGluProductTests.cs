using FedLlm.Quantization;
using FedLlm.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Modeling;

/// <summary>SwiGLU's product as one node that keeps gate and up and recomputes silu(gate) in backward.</summary>
public class SwiGluProductTests
{
    [Fact]
    public void The_product_and_its_gradients_match_a_hand_computed_case()
    {
        // Prepare: gate = [0, 1], up = [2, 3], upstream gradient 1
        using var gate = tensor(new float[] { 0, 1 }).requires_grad_(true);
        using var up = tensor(new float[] { 2, 3 }).requires_grad_(true);

        // Execute
        using var product = SwiGluProduct.Apply(gate, up);
        using var g = ones(2);
        product.backward([g]);

        // Assert: silu(x) = x·σ(x), σ(1) = 0.7310586; silu'(x) = σ(x)·(1 + x·(1 − σ(x))): 0.5 at 0, 0.9276705 at 1
        var p = product.data<float>().ToArray();
        Assert.Equal(0f, p[0]);
        Assert.Equal(3 * 0.7310586f, p[1], 5);
        var dUp = up.grad!.data<float>().ToArray();
        Assert.Equal(0f, dUp[0]);
        Assert.Equal(0.7310586f, dUp[1], 5);
        var dGate = gate.grad!.data<float>().ToArray();
        Assert.Equal(2 * 0.5f, dGate[0], 5);
        Assert.Equal(3 * 0.9276705f, dGate[1], 5);
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void The_node_equals_silu_times_up_bit_for_bit(ScalarType dtype)
    {
        // Prepare: gate and up as the MLP's projections would give them (results of ops, so their gradients flow on)
        using var generator = new Generator(31);
        using var gate0 = randn([2, 7, 96], generator: generator).to(dtype);
        using var up0 = randn([2, 7, 96], generator: generator).to(dtype);
        using var g = randn([2, 7, 96], generator: generator).to(dtype);
        using var gate1 = gate0.clone().requires_grad_(true);
        using var up1 = up0.clone().requires_grad_(true);
        using var gate2 = gate0.clone().requires_grad_(true);
        using var up2 = up0.clone().requires_grad_(true);

        // Execute
        using var activated = nn.functional.silu(gate1);
        using var plain = activated * up1;
        plain.backward([g]);
        using var fused = SwiGluProduct.Apply(gate2, up2);
        fused.backward([g]);

        // Assert
        Assert.True(plain.eq(fused).all().item<bool>(), "product");
        Assert.True(gate1.grad!.eq(gate2.grad!).all().item<bool>(), "∂gate");
        Assert.True(up1.grad!.eq(up2.grad!).all().item<bool>(), "∂up");
    }

    [Fact]
    public void Without_gradients_the_MLP_computes_what_it_computes_while_training()
    {
        // Prepare: a random tiny model's first MLP, on more rows than a decode step (DecodeLinear's few-row products
        // differ from linear's in rounding), so both paths' projections are linear and only the SwiGLU product differs
        var config = TinyModels.Llama();
        using var model = LlamaForCausalLM.CreateRandom(config, seed: 3);
        var mlp = model.Model.Layers[0].Mlp;
        using var x = randn([2, DecodeLinear.MaxWeightStationaryRows, config.HiddenSize], generator: new Generator(4));

        // Execute: the inference path (plain ops) and the training path (the node)
        Tensor inference;
        using (no_grad()) inference = mlp.forward(x);
        using var leaf = x.clone().requires_grad_(true);
        using var training = mlp.forward(leaf);

        // Assert
        using var _ = inference;
        Assert.True(inference.eq(training).all().item<bool>());
        Assert.True(training.requires_grad);
    }
}
