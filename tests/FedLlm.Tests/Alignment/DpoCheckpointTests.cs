using FedLlm.Alignment;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Tests.Alignment;

public class DpoCheckpointTests
{
    static readonly LoraOptions Lora = new() { Rank = 4, Alpha = 8, Dropout = 0.1 };

    static LlamaForCausalLM AdaptedModel()
    {
        var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true), seed: 11, std: 0.2);
        LoraInjector.Inject(model, Lora, new Generator(5));
        return model;
    }

    static readonly TrainingOptions Options = new()
    {
        MaxSteps = 6, BatchSize = 4, LearningRate = 1e-2, Schedule = LearningRateScheduleKind.Cosine, WarmupSteps = 1, SaveEverySteps = 3, Seed = 5,
    };

    [Fact]
    public void A_DPO_run_resumed_from_a_checkpoint_ends_bit_for_bit_like_the_uninterrupted_run()
    {
        var pairs = TokenPreferencePairs.Create(20, seed: 8); // 6 steps × 4 pairs cover the list, so the reference is precomputed in fixed batches
        string straightDir = Directory.CreateTempSubdirectory().FullName;
        using var straightModel = AdaptedModel();
        using (var trainer = new DpoTrainer(straightModel, Options, new DpoOptions(), padTokenId: 0))
            trainer.Train(pairs, onCheckpoint: t => TrainingCheckpoint.Save(straightDir, straightModel, Lora, t, null));
        var straight = AdapterIO.State(straightModel);

        // The "killed" run: only its step-3 checkpoint survives; a new process (empty reference cache) resumes from it.
        string checkpoint = Path.Combine(straightDir, "checkpoint-3");
        using var resumedModel = AdaptedModel();
        using var resumed = new DpoTrainer(resumedModel, Options, new DpoOptions(), padTokenId: 0);
        var state = TrainingCheckpoint.Restore(checkpoint, resumedModel, resumed);
        Assert.Equal(3, state.Step);
        Assert.Equal(3, resumed.StepMetrics.Count);
        resumed.Train(pairs);

        Assert.Equal(6, resumed.StepMetrics.Count);
        foreach (var (key, tensor) in AdapterIO.State(resumedModel))
            Assert.True(tensor.allclose(straight[key], rtol: 0, atol: 0), $"{key} differs after resume");
        Assert.Contains(straight, kv => kv.Key.Contains("lora_B") && kv.Value.abs().max().item<float>() > 0);
    }

    [Fact]
    public void An_instruction_checkpoint_is_refused_by_DPO_resume_with_a_clear_message()
    {
        string dir = Directory.CreateTempSubdirectory().FullName;
        using var model = AdaptedModel();
        using (var sft = new LocalTrainer(model, Options with { MaxSteps = 1, SaveEverySteps = 0 }, padTokenId: 0))
        {
            var ids = new[] { 1, 5, 6, 7, 2 };
            sft.Train([new FedLlm.Data.SftExample(ids, [-100, -100, 6, 7, 2], 2, false, true)],
                onCheckpoint: t => TrainingCheckpoint.Save(dir, model, Lora, t, null));
        }
        using var dpo = new DpoTrainer(model, Options, new DpoOptions(), padTokenId: 0);
        var error = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Restore(Path.Combine(dir, "checkpoint-1"), model, dpo));
        Assert.Contains("not a DPO checkpoint", error.Message);
    }
}
