using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Training;

public class CausalLmStepTests
{
    [Theory]
    [InlineData(ScalarType.Float32, 1e-5, 3)]
    [InlineData(ScalarType.Float64, 1e-10, 3)]
    [InlineData(ScalarType.Float32, 1e-5, 0)] // automatic: the tiny vocabulary puts every row in one chunk
    public void Chunked_forward_backward_equals_the_full_logits_loss(ScalarType dtype, double tolerance, int chunkTokens)
    {
        // Prepare: a tied model with adapters whose B is non-zero, so both A and B get gradients through the decoder.
        var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true), seed: 3, std: 0.2, dtype: dtype);
        var sites = LoraInjector.Inject(model, new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0 }, new Generator(4));
        using (no_grad())
        {
            var g = new Generator(5);
            foreach (var site in sites)
            {
                using var values = randn(site.Layer.LoraB.shape, site.Layer.LoraB.dtype, generator: g) * 0.1;
                site.Layer.LoraB.copy_(values);
            }
        }
        using var ids = tensor(new long[] { 5, 9, 13, 2, 40, 41, 7, 1, 3, 96, 50, 12, 8, 0 }, new long[] { 2, 7 });
        using var labels = tensor(new long[] { -100, -100, 13, 2, 40, 41, 7, -100, 3, 96, 50, 12, 8, -100 }, new long[] { 2, 7 });
        var trainable = LoraInjector.TrainableParameters(model).ToList();

        // Execute: the reference loss over full logits, then the chunked step (chunk 3 < 10 labelled rows, so it loops).
        double expectedLoss;
        using (var loss = model.Loss(ids, labels))
        {
            expectedLoss = loss.ToDouble();
            loss.backward();
        }
        var expectedGrads = trainable.Select(p => p.grad!.clone()).ToList();
        foreach (var p in trainable) p.grad!.zero_();
        var (actualLoss, labelled) = CausalLmStep.ForwardBackward(model, ids, labels, attentionMask: null, lossScale: 1.0, chunkTokens);

        // Assert
        Assert.Equal(10, labelled); // labels 1..6 of each row that are not −100: 5 + 5
        Assert.Equal(expectedLoss, actualLoss, tolerance);
        for (int i = 0; i < trainable.Count; i++)
        {
            Assert.True(expectedGrads[i].abs().max().ToDouble() > 0, $"parameter {i} has no gradient to compare");
            Assert.True(trainable[i].grad!.allclose(expectedGrads[i], rtol: 0, atol: tolerance), $"parameter {i}");
        }
    }
}
