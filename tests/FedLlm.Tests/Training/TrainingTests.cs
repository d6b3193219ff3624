using FedLlm.Data;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Tests.Training;

public class TrainingTests
{
    static LlamaForCausalLM AdaptedModel(long seed = 7)
    {
        var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true), seed, std: 0.2);
        LoraInjector.Inject(model, new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1 }, new Generator(3));
        return model;
    }

    /// <summary>Random examples whose first three tokens are prompt (label −100) and whose rest is response.</summary>
    static List<SftExample> Examples(int count, int seed = 1)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ =>
        {
            int length = rng.Next(5, 12);
            var ids = Enumerable.Range(0, length).Select(_ => rng.Next(4, 97)).ToArray();
            var labels = ids.Select((id, i) => i < 3 ? -100 : id).ToArray();
            return new SftExample(ids, labels, promptLength: 3, truncated: false, boundaryAligned: true);
        }).ToList();
    }

    [Fact]
    public void Chunked_forward_backward_equals_the_plain_loss_and_its_gradients()
    {
        using var a = AdaptedModel();
        using var b = AdaptedModel();
        a.eval(); b.eval(); // no dropout, so both see the same function
        var ids = tensor(new long[] { 1, 5, 9, 30, 2, 77, 4, 8, 15, 16, 23, 42, 0, 0 }, new long[] { 2, 7 });
        var labels = tensor(new long[] { -100, -100, 9, 30, 2, 77, 4, -100, 15, 16, 23, 42, -100, -100 }, new long[] { 2, 7 });
        using var plain = a.Loss(ids, labels);
        plain.backward();
        var (chunked, n) = CausalLmStep.ForwardBackward(b, ids, labels, null, lossScale: 1.0, chunkTokens: 3);
        Assert.Equal(9, n);
        Assert.Equal(plain.item<float>(), chunked, 5);
        var gradsA = LoraInjector.TrainableParameters(a).Select(p => p.grad!).ToList();
        var gradsB = LoraInjector.TrainableParameters(b).Select(p => p.grad!).ToList();
        Assert.Contains(gradsA, g => g.abs().sum().item<float>() > 0);
        for (int i = 0; i < gradsA.Count; i++) Assert.True(gradsA[i].allclose(gradsB[i], rtol: 1e-4, atol: 1e-6), $"gradient {i}");
    }

    [Fact]
    public void AdamW_matches_hand_computed_steps()
    {
        // One scalar parameter, gradient 2w (loss w²), lr 0.1, betas 0.9/0.999, eps 1e-8, weight decay 0.01.
        var w = new TorchSharp.Modules.Parameter(tensor(new[] { 1.0 }), requires_grad: true);
        using var optimizer = new AdamW(new[] { ("w", w) }, weightDecay: 0.01);
        double expected = 1.0, m = 0, v = 0;
        for (int t = 1; t <= 3; t++)
        {
            optimizer.ZeroGrad();
            using (var loss = (w * w).sum()) loss.backward();
            double g = 2 * expected;
            expected *= 1 - 0.1 * 0.01;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            expected -= 0.1 * (m / (1 - Math.Pow(0.9, t))) / (Math.Sqrt(v / (1 - Math.Pow(0.999, t))) + 1e-8);
            optimizer.Step(0.1);
            Assert.Equal(expected, w.item<double>(), 12);
        }
    }

    [Fact]
    public void Learning_rate_schedules_follow_transformers()
    {
        var cosine = new LearningRateSchedule(LearningRateScheduleKind.Cosine, 1.0, TotalSteps: 12, WarmupSteps: 2, MinLearningRate: 0.0);
        Assert.Equal(0.0, cosine.At(0));
        Assert.Equal(0.5, cosine.At(1));
        Assert.Equal(1.0, cosine.At(2));
        Assert.Equal(0.5, cosine.At(7), 12);     // halfway through the 10 decay steps
        Assert.Equal(0.0, cosine.At(12), 12);
        var linear = new LearningRateSchedule(LearningRateScheduleKind.Linear, 2.0, TotalSteps: 4);
        Assert.Equal(new[] { 2.0, 1.5, 1.0, 0.5 }, Enumerable.Range(0, 4).Select(linear.At));
        var constant = new LearningRateSchedule(LearningRateScheduleKind.Constant, 3e-4, TotalSteps: 4, WarmupSteps: 1);
        Assert.Equal(new[] { 0.0, 3e-4, 3e-4, 3e-4 }, Enumerable.Range(0, 4).Select(constant.At));
    }

    [Fact]
    public void Training_lowers_the_loss_and_touches_only_the_adapters()
    {
        using var model = AdaptedModel();
        var frozenBefore = model.named_parameters().Where(p => !p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.clone());
        var options = new TrainingOptions { MaxSteps = 30, BatchSize = 4, LearningRate = 1e-2, Seed = 5 };
        using var trainer = new LocalTrainer(model, options, padTokenId: 0);
        var examples = Examples(8);
        trainer.Train(examples);
        Assert.True(trainer.StepLosses.TakeLast(5).Average() < 0.7 * trainer.StepLosses.Take(5).Average(),
            $"loss {trainer.StepLosses.Take(5).Average():F3} -> {trainer.StepLosses.TakeLast(5).Average():F3}");
        foreach (var (name, parameter) in model.named_parameters().Where(p => !p.parameter.requires_grad))
            Assert.True(parameter.allclose(frozenBefore[name], rtol: 0, atol: 0), $"{name} changed");
    }

    [Fact]
    public void A_resumed_run_ends_bit_for_bit_where_an_uninterrupted_run_ends()
    {
        var options = new TrainingOptions { MaxSteps = 6, BatchSize = 3, GradientAccumulationSteps = 2, LearningRate = 5e-3, Seed = 9, Schedule = LearningRateScheduleKind.Cosine, WarmupSteps = 2 };
        var examples = Examples(10, seed: 4);
        var lora = new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1 };

        using var straight = AdaptedModel();
        using (var trainer = new LocalTrainer(straight, options, 0)) trainer.Train(examples);

        string output = Directory.CreateTempSubdirectory().FullName;
        using (var first = AdaptedModel())
        using (var trainer = new LocalTrainer(first, options with { SaveEverySteps = 3 }, 0))
        {
            // Stop after the checkpoint at step 3, as a crash would.
            var cancel = new CancellationTokenSource();
            try
            {
                trainer.Train(examples, onCheckpoint: t => { TrainingCheckpoint.Save(output, first, lora, t, null); cancel.Cancel(); }, cancellationToken: cancel.Token);
            }
            catch (OperationCanceledException) { }
            Assert.Equal(3, trainer.Step);
        }

        using var resumed = AdaptedModel(seed: 7);
        using (var trainer = new LocalTrainer(resumed, options, 0))
        {
            var checkpoint = TrainingCheckpoint.Latest(output)!;
            Assert.EndsWith("checkpoint-3", checkpoint);
            TrainingCheckpoint.Restore(checkpoint, resumed, trainer);
            trainer.Train(examples);
            Assert.Equal(6, trainer.Step);
        }
        var expected = AdapterIO.State(straight);
        var actual = AdapterIO.State(resumed);
        foreach (var (key, tensor) in expected)
            Assert.True(tensor.bytes.SequenceEqual(actual[key].bytes), $"{key} differs after resume");
    }
}
