using FedLlm.Alignment;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Tests.Alignment;

public class DpoTrainerTests
{
    static LlamaForCausalLM AdaptedModel(double dropout = 0.0)
    {
        var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true), seed: 11, std: 0.2);
        LoraInjector.Inject(model, new LoraOptions { Rank = 8, Alpha = 16, Dropout = dropout }, new Generator(5));
        return model;
    }

    [Fact]
    public void DPO_moves_probability_from_rejected_to_chosen_on_held_out_pairs()
    {
        using var model = AdaptedModel(dropout: 0.05);
        var train = TokenPreferencePairs.Create(256, seed: 1);
        var heldOut = TokenPreferencePairs.Create(32, seed: 2);
        var dpo = new DpoOptions { Beta = 0.1 };
        using var heldOutReference = new ReferenceLogProbCache();
        var before = PreferenceEvaluation.Evaluate(model, heldOut, heldOutReference, dpo, padTokenId: 0);
        var baseLogps = (before.LogpsChosen, before.LogpsRejected);

        var options = new TrainingOptions { MaxSteps = 60, BatchSize = 8, LearningRate = 1e-2, Seed = 3 };
        using var trainer = new DpoTrainer(model, options, dpo, padTokenId: 0);
        trainer.Train(train);
        var after = PreferenceEvaluation.Evaluate(model, heldOut, heldOutReference, dpo, padTokenId: 0);

        // B starts at zero, so before training the policy is the reference: rewards 0, loss log 2.
        Assert.Equal(0, before.RewardsMargin, 6);
        Assert.Equal(Math.Log(2), before.Loss, 5);
        Assert.True(after.RewardsMargin > 0.5, $"held-out margin {before.RewardsMargin:F3} -> {after.RewardsMargin:F3}");
        // Seeds fixed: 0.00 -> 0.88 accuracy and 0 -> 0.67 margin; chance is 0.5, and a sign error would go below it.
        Assert.True(after.RewardsAccuracy >= 0.8, $"held-out accuracy {before.RewardsAccuracy:F2} -> {after.RewardsAccuracy:F2}");
        Assert.True(after.Loss < before.Loss - 0.1, $"held-out loss {before.Loss:F3} -> {after.Loss:F3}");
        Assert.True(after.LogpsRejected < baseLogps.LogpsRejected, "rejected log-probability should fall");
        // The reference was computed once per training pair, however many epochs the 30 steps × 8 pairs span.
        Assert.Equal(train.Count, trainer.Reference.PairsComputed);
        Assert.Equal(heldOut.Count, heldOutReference.PairsComputed);
        var firstSteps = DpoMetrics.Aggregate(trainer.StepMetrics.Take(5));
        var lastSteps = DpoMetrics.Aggregate(trainer.StepMetrics.TakeLast(5));
        Assert.True(lastSteps.RewardsMargin > firstSteps.RewardsMargin, "training margin should rise");
        Assert.Equal(options.MaxSteps, trainer.StepMetrics.Count);
    }

    [Fact]
    public void Gradient_accumulation_gives_the_step_of_one_large_batch()
    {
        var pairs = TokenPreferencePairs.Create(8, seed: 4);
        double[] Run(int batch, int accumulation)
        {
            using var model = AdaptedModel();
            // Make the policy differ from the reference so the loss has non-trivial gradients in A as well as B.
            using (no_grad())
                foreach (var site in LoraInjector.Sites(model)) site.Layer.LoraB.normal_(0, 0.05, new Generator(9));
            var options = new TrainingOptions { MaxSteps = 1, BatchSize = batch, GradientAccumulationSteps = accumulation, LearningRate = 1e-2, MaxGradNorm = 0 };
            using var trainer = new DpoTrainer(model, options, new DpoOptions(), padTokenId: 0);
            var result = trainer.TrainStep(pairs, step: 0, learningRate: 1e-2);
            return [result.Metrics.Loss, result.GradNorm, .. AdapterIO.State(model).Values.SelectMany(t => t.data<float>().ToArray()).Select(v => (double)v)];
        }
        var whole = Run(4, 1);
        var split = Run(2, 2);
        Assert.Equal(whole.Length, split.Length);
        Assert.True(whole[1] > 1e-3, "the step should have a gradient to compare");
        for (int i = 0; i < whole.Length; i++) Assert.True(Math.Abs(whole[i] - split[i]) < 1e-5, $"value {i}: {whole[i]} vs {split[i]}");
    }

    [Fact]
    public void The_hooks_run_every_step_and_the_extra_loss_reaches_the_gradients()
    {
        using var model = AdaptedModel();
        var pairs = TokenPreferencePairs.Create(4, seed: 6);
        var options = new TrainingOptions { MaxSteps = 2, BatchSize = 2, LearningRate = 1e-3, MaxGradNorm = 0 };
        using var trainer = new DpoTrainer(model, options, new DpoOptions(), padTokenId: 0);
        var rates = new List<double>();
        trainer.AfterOptimizerStep = rates.Add;
        var b0 = LoraInjector.Sites(model)[0].Layer.LoraB;
        // With B = 0 the DPO gradient of B is still non-zero, so compare the gradient norm with and without a large extra term.
        double plain = trainer.TrainStep(pairs, 0, 0).GradNorm;
        double extra = trainer.TrainStep(pairs, 0, 0, () => b0.sum() * 100).GradNorm;
        Assert.True(extra > plain + 50, $"extra loss not in the gradient: {plain} vs {extra}");
        trainer.Train(pairs);
        Assert.Equal([1e-3, 1e-3], rates);
    }
}
