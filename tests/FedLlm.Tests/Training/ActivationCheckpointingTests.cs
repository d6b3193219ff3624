using FedLlm.Alignment;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Training;

public class ActivationCheckpointingTests
{
    [Theory]
    [InlineData(ScalarType.Float64, 0.0, 1e-12)]
    [InlineData(ScalarType.Float32, 0.0, 1e-6)]
    [InlineData(ScalarType.Float32, 0.3, 1e-6)]
    public void Checkpointed_step_gives_the_gradients_of_the_plain_step(ScalarType dtype, double dropout, double tolerance)
    {
        // Prepare: non-zero B so that A's gradient depends on every layer; dropout > 0 checks that the recomputation
        // replays the same masks (a fresh draw would change the gradients by O(1)).
        (double Loss, List<Tensor> Grads, Tensor GeneratorState) Run(bool checkpointing)
        {
            var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: false), seed: 7, std: 0.2, dtype: dtype);
            var sites = LoraInjector.Inject(model, new LoraOptions { Rank = 4, Alpha = 8, Dropout = dropout }, new Generator(8));
            using (no_grad())
            {
                var g = new Generator(9);
                foreach (var site in sites)
                {
                    using var values = randn(site.Layer.LoraB.shape, site.Layer.LoraB.dtype, generator: g) * 0.1;
                    site.Layer.LoraB.copy_(values);
                }
            }
            var generator = new Generator(10);
            LoraInjector.SetDropoutGenerator(model, generator);
            model.ActivationCheckpointing = checkpointing;
            using var ids = tensor(new long[] { 5, 9, 13, 2, 40, 41, 7, 1, 3, 96, 50, 12, 8, 0 }, new long[] { 2, 7 });
            using var labels = tensor(new long[] { -100, 9, 13, 2, 40, 41, 7, -100, 3, 96, 50, 12, 8, -100 }, new long[] { 2, 7 });
            var (loss, _) = CausalLmStep.ForwardBackward(model, ids, labels, attentionMask: null, lossScale: 1.0, chunkTokens: 4);
            var grads = LoraInjector.TrainableParameters(model).Select(p => p.grad!.clone()).ToList();
            return (loss, grads, generator.get_state());
        }

        // Execute
        var plain = Run(checkpointing: false);
        var checkpointed = Run(checkpointing: true);

        // Assert: same loss, same gradient for every A and B (layer 0's included), generator left in the same state.
        Assert.Equal(plain.Loss, checkpointed.Loss, tolerance);
        Assert.Equal(2 * 7 * 2, plain.Grads.Count);
        for (int i = 0; i < plain.Grads.Count; i++)
        {
            Assert.True(plain.Grads[i].abs().max().ToDouble() > 0, $"parameter {i} has no gradient to compare");
            double diff = (plain.Grads[i] - checkpointed.Grads[i]).abs().max().ToDouble();
            Assert.True(diff <= tolerance, $"parameter {i}: max difference {diff:E2} > {tolerance:E0}");
        }
        Assert.Equal(0, plain.GeneratorState.ne(checkpointed.GeneratorState).sum().item<long>());
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.3)]
    public void Checkpointed_DPO_step_gives_the_loss_and_gradients_of_the_plain_step(double dropout)
    {
        // Prepare: non-zero B so the policy differs from the reference and A's gradients are non-zero; learning rate 0
        // keeps the weights, so the gradients the step leaves behind can be compared.
        var pairs = FedLlm.Tests.Alignment.TokenPreferencePairs.Create(4, seed: 6);
        (double Loss, List<Tensor> Grads) Run(bool checkpointing)
        {
            using var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: false), seed: 7, std: 0.2);
            var sites = LoraInjector.Inject(model, new LoraOptions { Rank = 4, Alpha = 8, Dropout = dropout }, new Generator(8));
            using (no_grad())
            {
                var g = new Generator(9);
                foreach (var site in sites) site.Layer.LoraB.normal_(0, 0.1, g);
            }
            model.ActivationCheckpointing = checkpointing;
            using var trainer = new DpoTrainer(model, new TrainingOptions { MaxSteps = 1, BatchSize = 2, GradientAccumulationSteps = 2, MaxGradNorm = 0 },
                new DpoOptions(), padTokenId: 0);
            model.train();
            var step = trainer.TrainStep(pairs, 0, learningRate: 0);
            return (step.Loss, LoraInjector.TrainableParameters(model).Select(p => p.grad!.clone()).ToList());
        }

        // Execute
        var plain = Run(checkpointing: false);
        var checkpointed = Run(checkpointing: true);

        // Assert
        Assert.Equal(plain.Loss, checkpointed.Loss, 1e-6);
        for (int i = 0; i < plain.Grads.Count; i++)
        {
            Assert.True(plain.Grads[i].abs().max().ToDouble() > 0, $"parameter {i} has no gradient to compare");
            double diff = (plain.Grads[i] - checkpointed.Grads[i]).abs().max().ToDouble();
            Assert.True(diff <= 1e-6, $"parameter {i}: max difference {diff:E2}");
        }
    }
}
