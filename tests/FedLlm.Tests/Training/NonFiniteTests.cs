using System.Diagnostics;
using System.Text.Json;
using FedLlm.Checkpoints;
using FedLlm.Data;
using FedLlm.Federation;
using FedLlm.Generation;
using FedLlm.Io;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Quantization;
using FedLlm.Tests.Modeling;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Tests.Training;

public class NonFiniteTests
{
    static readonly LoraOptions Lora = new() { Rank = 4, Alpha = 8, Dropout = 0 };

    static LlamaForCausalLM AdaptedModel()
    {
        var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true), seed: 7, std: 0.2);
        LoraInjector.Inject(model, Lora, new Generator(3));
        return model;
    }

    static readonly List<SftExample> Examples =
    [
        new([1, 5, 6, 7, 2], [-100, -100, 6, 7, 2], 2, false, true),
        new([1, 8, 9, 10, 11, 12, 2], [-100, -100, -100, 10, 11, 12, 2], 3, false, true),
    ];

    static string TempDir() => Directory.CreateTempSubdirectory("fedllm-nonfinite-").FullName;

    [Theory]
    [InlineData(nameof(TrainingOptions.LearningRate), double.PositiveInfinity)]
    [InlineData(nameof(TrainingOptions.LearningRate), double.NaN)]
    [InlineData(nameof(TrainingOptions.MaxGradNorm), double.PositiveInfinity)]
    [InlineData(nameof(TrainingOptions.WeightDecay), double.NaN)]
    [InlineData(nameof(TrainingOptions.AdamEpsilon), double.PositiveInfinity)]
    public void A_non_finite_float_option_is_refused_with_its_name(string option, double value)
    {
        var options = option switch
        {
            nameof(TrainingOptions.LearningRate) => new TrainingOptions { LearningRate = value },
            nameof(TrainingOptions.MaxGradNorm) => new TrainingOptions { MaxGradNorm = value },
            nameof(TrainingOptions.WeightDecay) => new TrainingOptions { WeightDecay = value },
            _ => new TrainingOptions { AdamEpsilon = value },
        };
        var error = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Equal(option, error.ParamName);
        Assert.Contains(option, error.Message);
    }

    [Fact]
    public void Divergence_stops_before_the_optimizer_step_naming_step_and_value_and_leaves_only_good_checkpoints()
    {
        // Prepare: lr 1e30 moves every adapter weight by about 1e30 in step 1 (still finite), so step 2's B·A·x overflows.
        using var model = AdaptedModel();
        string dir = TempDir();
        var options = new TrainingOptions { MaxSteps = 5, BatchSize = 2, LearningRate = 1e30, SaveEverySteps = 1, MaxGradNorm = 0 };
        using var trainer = new LocalTrainer(model, options, padTokenId: 0);
        Dictionary<string, Tensor>? afterStep1 = null;

        // Execute
        var error = Assert.Throws<NonFiniteTrainingException>(() => trainer.Train(Examples, onCheckpoint: t =>
        {
            TrainingCheckpoint.Save(dir, model, Lora, t, null);
            afterStep1 ??= AdapterIO.State(model).ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        }));

        // Assert: the message names the step and the value; the adapter was not stepped with the non-finite gradient;
        // the output holds only checkpoint-1, finite, and no staging folder.
        Assert.Equal(2, error.Step);
        Assert.Contains("step 2", error.Message);
        Assert.Contains(error.Value.ToString(), error.Message);
        Assert.False(double.IsFinite(error.Value));
        Assert.Equal(1, trainer.Step);
        foreach (var (key, value) in AdapterIO.State(model)) Assert.True(value.equal(afterStep1![key]).all().item<bool>(), key);
        Assert.Equal(["checkpoint-1"], Directory.GetFileSystemEntries(dir).Select(Path.GetFileName));
        using var reloaded = AdaptedModel();
        AdapterIO.Load(Path.Combine(dir, "checkpoint-1"), reloaded);
        Assert.All(AdapterIO.State(reloaded).Values, t => Assert.True(FiniteTensors.AllFinite(t)));
    }

    /// <summary>An extra loss that is NaN on the second call only: one bad step among good ones.</summary>
    static Func<Tensor> NaNOnSecondStep(LlamaForCausalLM model)
    {
        int calls = 0;
        var b0 = LoraInjector.Sites(model)[0].Layer.LoraB;
        return () => b0.sum() * (++calls == 2 ? double.NaN : 0.0);
    }

    [Fact]
    public void Stop_mode_names_the_gradient_norm_when_only_the_gradient_is_not_finite()
    {
        using var model = AdaptedModel();
        using var trainer = new LocalTrainer(model, new TrainingOptions { MaxSteps = 3, BatchSize = 2, LearningRate = 1e-2 }, padTokenId: 0);
        trainer.ExtraLoss = NaNOnSecondStep(model);
        var error = Assert.Throws<NonFiniteTrainingException>(() => trainer.Train(Examples));
        Assert.Equal(2, error.Step);
        Assert.Equal("gradient norm", error.Quantity);
        Assert.Contains("step 2: the gradient norm is NaN", error.Message);
    }

    [Fact]
    public void Skip_mode_skips_the_bad_step_and_continues_and_its_checkpoint_round_trips()
    {
        // Prepare
        using var model = AdaptedModel();
        string dir = TempDir();
        var options = new TrainingOptions { MaxSteps = 3, BatchSize = 2, LearningRate = 1e-2, OnNonFinite = NonFiniteAction.Skip };
        using var trainer = new LocalTrainer(model, options, padTokenId: 0);
        trainer.ExtraLoss = NaNOnSecondStep(model);
        var hookRates = new List<double>();
        trainer.AfterOptimizerStep = hookRates.Add;

        // Execute
        trainer.Train(Examples, onCheckpoint: t => TrainingCheckpoint.Save(dir, model, Lora, t, null));

        // Assert: step 2 skipped (no optimizer step, no hook), steps 1 and 3 taken; the adapter is finite.
        Assert.Equal(3, trainer.Step);
        Assert.Equal([2], trainer.SkippedSteps);
        Assert.Equal(2, trainer.Optimizer.StepCount);
        Assert.Equal(2, hookRates.Count);
        Assert.All(trainer.StepLosses, l => Assert.True(double.IsFinite(l)));
        Assert.All(AdapterIO.State(model).Values, t => Assert.True(FiniteTensors.AllFinite(t)));
        using var resumedModel = AdaptedModel();
        using var resumed = new LocalTrainer(resumedModel, options, padTokenId: 0);
        TrainingCheckpoint.Restore(TrainingCheckpoint.Latest(dir)!, resumedModel, resumed);
        Assert.Equal(3, resumed.Step);
        Assert.Equal(2, resumed.Optimizer.StepCount);
    }

    [Fact]
    public void Trainer_state_with_NaN_and_infinite_losses_is_written_and_read_back()
    {
        var state = new TrainerState(2, 2, 1, [double.NaN, double.PositiveInfinity], [null, new Dictionary<string, double> { ["x"] = double.NegativeInfinity }], "sft");
        string json = JsonSerializer.Serialize(state, JsonDefaults.Options);
        var back = JsonSerializer.Deserialize<TrainerState>(json, JsonDefaults.Options)!;
        Assert.Contains("\"NaN\"", json);
        Assert.True(double.IsNaN(back.StepLosses[0]));
        Assert.Equal(double.PositiveInfinity, back.StepLosses[1]);
        Assert.Equal(double.NegativeInfinity, back.StepMetrics![1]!["x"]);
    }

    [Fact]
    public void An_adapter_with_a_NaN_is_neither_written_nor_loaded_and_the_message_names_tensor_and_file()
    {
        // Prepare: a good adapter on disk, then the same file rewritten with one NaN behind AdapterIO's back.
        using var model = AdaptedModel();
        string dir = TempDir();
        AdapterIO.Save(dir, model, Lora);
        string file = Path.Combine(dir, AdapterIO.WeightsFileName);
        var state = AdapterIO.State(model).ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        string bad = state.Keys.Order(StringComparer.Ordinal).Last();
        state[bad][0, 0] = double.NaN;
        SafeTensorsWriter.Write(file, state.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        using var target = AdaptedModel();
        var before = AdapterIO.State(target).ToDictionary(kv => kv.Key, kv => kv.Value.clone());

        // Execute
        var loadError = Assert.Throws<NonFiniteTensorException>(() => AdapterIO.Load(dir, target));
        using (no_grad()) AdapterIO.State(model)[bad][0, 0] = double.PositiveInfinity;
        string other = TempDir();
        var saveError = Assert.Throws<NonFiniteTensorException>(() => AdapterIO.Save(other, model, Lora));

        // Assert: both name the tensor and the file; the refused load left the adapters untouched; nothing was written.
        Assert.Contains(bad, loadError.Message);
        Assert.Contains(file, loadError.Message);
        foreach (var (key, value) in AdapterIO.State(target)) Assert.True(value.equal(before[key]).all().item<bool>(), key);
        Assert.Contains(bad, saveError.Message);
        Assert.Contains(Path.Combine(other, AdapterIO.WeightsFileName), saveError.Message);
        Assert.Empty(Directory.GetFileSystemEntries(other));
    }

    [Theory]
    [InlineData("fp32")]
    [InlineData("bf16")] // converted from the float32 file on the way in
    [InlineData("nf4")]
    public void A_model_with_a_NaN_base_weight_is_refused_at_load_naming_tensor_and_file(string baseDtype)
    {
        // Prepare: a saved model whose q_proj weight of layer 1 gets one NaN (the quantised path reads it separately).
        string dir = TempDir();
        using (var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true), seed: 7, std: 0.2)) ModelLoader.Save(dir, model);
        const string bad = "model.layers.1.self_attn.q_proj.weight";
        Dictionary<string, Tensor> tensors;
        using (var folder = CheckpointFolder.Open(dir))
            tensors = folder.TensorNames.ToDictionary(n => n, n => folder.Read(n));
        tensors[bad][0, 0] = double.NaN;
        CheckpointWriter.Write(dir, tensors);

        // Execute
        var error = Assert.Throws<NonFiniteTensorException>(() => ModelLoader.Load(dir, BaseWeights.Parse(baseDtype)));

        // Assert
        Assert.Contains(bad, error.Message);
        Assert.Contains(Path.Combine(dir, CheckpointFolder.SingleFileName), error.Message);
    }

    [Fact]
    public void Generation_stops_with_a_clear_error_when_the_logits_are_not_finite()
    {
        using var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true), seed: 7, std: 0.2);
        using (no_grad()) model.Model.FinalNorm.parameters().First()[0] = double.NaN;
        var generator = new TextGenerator(model, new IdTokenizer(model.Config.VocabSize));
        var error = Assert.Throws<InvalidOperationException>(() => generator.GenerateIds([[1, 5, 6]], new GenerationOptions { MaxNewTokens = 3 }));
        Assert.Contains("generation step 1", error.Message);
        Assert.Contains("non-finite logits", error.Message);
    }

    static int DeadProcessId()
    {
        using var process = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        process.WaitForExit();
        return process.Id;
    }

    [Fact]
    public void Staging_folders_of_dead_writers_are_removed_when_a_run_resumes_and_live_ones_are_kept()
    {
        // Prepare: a dead writer's checkpoint and run-state staging folders, and one of this (live) process.
        string dir = TempDir();
        int dead = DeadProcessId();
        string deadCheckpoint = Path.Combine(dir, $".checkpoint-3.{dead}.tmp");
        string deadState = Path.Combine(dir, $".state-2.{dead}.tmp");
        string live = Path.Combine(dir, $".checkpoint-4.{Environment.ProcessId}.tmp");
        foreach (var d in new[] { deadCheckpoint, deadState, live }) Directory.CreateDirectory(d);
        File.WriteAllText(Path.Combine(deadCheckpoint, "adapter_model.safetensors"), "half-written");

        // Execute
        Assert.Null(TrainingCheckpoint.Latest(dir));
        Assert.True(Directory.Exists(deadState), "the trainer only cleans its own checkpoint staging folders");
        Assert.Null(new RunStore(dir).LoadLatest());

        // Assert
        Assert.False(Directory.Exists(deadCheckpoint));
        Assert.False(Directory.Exists(deadState));
        Assert.True(Directory.Exists(live));
    }
}
