using FedLlm.Alignment;
using FedLlm.Data;
using FedLlm.Evaluation;
using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Tests.Alignment;
using FedLlm.Tests.Data;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Tests.Training;

/// <summary>
/// Every tensor a library path creates must follow the model's device, or <c>--device cuda</c> fails at the first
/// CPU-made input (ids, masks, labels, reference values, dropout and sampling generators).
/// </summary>
/// <remarks>
/// Without a GPU, the check runs a CPU model with torch's default device set to <c>meta</c>: a tensor created with the
/// model's device lands on the CPU as it should, while one created without a device lands on meta and fails at once
/// with a device mismatch (or meta's missing kernels) when it meets a CPU weight. The model itself cannot live on meta:
/// libtorch has no meta kernel for index_select, so the embedding of a meta model fails whatever the inputs' device
/// and could not tell a right input from a wrong one. Here everything runs on real data, so each path also runs past
/// its host syncs (loss values, sampled tokens) and its results are compared with a run under the normal default.
/// </remarks>
[Collection(RunsAloneCollection.Name)] // the default device is process-wide
public class DevicePlacementTests
{
    static LlamaForCausalLM Model(double dropout = 0.1)
    {
        var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true) with { VocabSize = 140 }, seed: 7, std: 0.2);
        LoraInjector.Inject(model, new LoraOptions { Rank = 4, Alpha = 8, Dropout = dropout }, new Generator(3));
        using (no_grad())
            foreach (var site in LoraInjector.Sites(model)) site.Layer.LoraB.normal_(0, 0.05, new Generator(9));
        return model;
    }

    /// <summary>Runs <paramref name="run"/> with tensors created without a device going to meta.</summary>
    static T WithMetaDefault<T>(Func<T> run)
    {
        var previous = get_default_device();
        set_default_device(META);
        try { return run(); }
        finally { set_default_device(previous); }
    }

    static void AssertSame<T>(Func<T> run, Func<T, double[]> numbers)
    {
        var normal = numbers(run());
        var guarded = numbers(WithMetaDefault(run));
        Assert.Equal(normal, guarded);
    }

    static readonly List<SftExample> Examples =
    [
        new([1, 5, 6, 7, 2], [-100, -100, 6, 7, 2], 2, false, true),
        new([1, 8, 9, 10, 11, 12, 2], [-100, -100, -100, 10, 11, 12, 2], 3, false, true),
        new([1, 13, 14, 2], [-100, -100, 14, 2], 2, false, true),
    ];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void An_instruction_step_creates_its_inputs_and_dropout_masks_on_the_model_device(bool checkpointing)
    {
        AssertSame(() =>
        {
            using var model = Model();
            model.ActivationCheckpointing = checkpointing;
            using var trainer = new LocalTrainer(model, new TrainingOptions { MaxSteps = 1, BatchSize = 2, GradientAccumulationSteps = 2 }, padTokenId: 0);
            model.train();
            var step = trainer.TrainStep(Examples, 0, 1e-2);
            return new[] { step.Loss, step.GradNorm }.Concat(AdapterValues(model)).ToArray();
        }, x => x);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_DPO_step_and_its_reference_pass_create_their_inputs_on_the_model_device(bool checkpointing)
    {
        var pairs = TokenPreferencePairs.Create(4, seed: 3);
        AssertSame(() =>
        {
            using var model = Model();
            model.ActivationCheckpointing = checkpointing;
            using var trainer = new DpoTrainer(model, new TrainingOptions { MaxSteps = 1, BatchSize = 2, GradientAccumulationSteps = 2 }, new DpoOptions(), 0);
            model.train();
            var step = trainer.TrainStep(pairs, 0, 1e-2);
            return new[] { step.Loss, step.GradNorm, step.Metrics.RewardsMargin }.Concat(AdapterValues(model)).ToArray();
        }, x => x);
    }

    [Fact]
    public void Reference_log_probabilities_are_computed_from_inputs_on_the_model_device()
    {
        var pairs = TokenPreferencePairs.Create(3, seed: 4);
        AssertSame(() =>
        {
            using var model = Model();
            using var cache = new ReferenceLogProbCache();
            var (chosen, rejected) = cache.Get(model, pairs, [0, 1, 2], new PreferenceCollator(0), batchSize: 2, chunkTokens: 4);
            return chosen.Concat(rejected).ToArray();
        }, x => x);
    }

    [Fact]
    public void Held_out_evaluation_and_cached_generation_create_their_inputs_on_the_model_device()
    {
        var tokenizer = new CharTokenizer();
        var heldOut = new List<InstructionExample> { new("say hi", "hi"), new("count", "one two") };
        AssertSame(() =>
        {
            using var model = Model(dropout: 0);
            var evaluation = new HeldOutEvaluation(model, tokenizer, PromptTemplate.FromName("alpaca"), maxSequenceLength: 256);
            double loss = evaluation.Loss(heldOut);
            // Sampling (temperature > 0) draws from a generator, which must belong to the logits' device; several new
            // tokens run the KV-cache path with its one-token inputs and growing attention mask.
            var sampled = new TextGenerator(model, tokenizer).GenerateIds(
                [[CharTokenizer.Bos, 20, 21, 22], [CharTokenizer.Bos, 23]], new GenerationOptions { MaxNewTokens = 4, Temperature = 0.8, Seed = 5 });
            return new[] { loss }.Concat(sampled.SelectMany(s => s.Select(i => (double)i))).ToArray();
        }, x => x);
    }

    static IEnumerable<double> AdapterValues(LlamaForCausalLM model) =>
        AdapterIO.State(model).Values.SelectMany(t => t.data<float>().ToArray()).Select(v => (double)v);
}
