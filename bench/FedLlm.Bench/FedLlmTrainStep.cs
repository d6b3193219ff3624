using System.Diagnostics;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Quantization;
using FedLlm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>
/// The FedLlm side of the benchmark: the training step LocalTrainer runs, on a SmolLM-135M-shaped model with random weights.
/// </summary>
/// <remarks>
/// The model is loaded from a random checkpoint written once (fp32 safetensors), so each base precision is the
/// same weights quantised (or cast) while loading, as <c>fedllm train --base-dtype</c> does.
/// One step = CausalLmStep.ForwardBackward (chunked loss, two-phase backward), clip the adapters' gradient norm to 1.0,
/// AdamW, zero the gradients — all inside one dispose scope, so every tensor of the step is freed when it ends.
/// Labels are the input ids (every token labelled), exactly as bench/pytorch/train_step.py sets them.
/// </remarks>
public static class FedLlmTrainStep
{
    /// <summary>SmolLM-135M's config.json (HuggingFaceTB/SmolLM-135M): 30 layers of 576, 9 heads over 3 KV heads, tied head.</summary>
    public static readonly LlamaConfig SmolLm135M = new()
    {
        Family = ModelFamily.Llama,
        VocabSize = 49152,
        HiddenSize = 576,
        IntermediateSize = 1536,
        NumHiddenLayers = 30,
        NumAttentionHeads = 9,
        NumKeyValueHeads = 3,
        HeadDim = 64,
        RmsNormEps = 1e-5,
        RopeTheta = 10000,
        MaxPositionEmbeddings = 2048,
        TieWordEmbeddings = true,
    };

    /// <summary>r 16, alpha 32, dropout 0.05 on q k v o gate up down, as the issue and OpenFedLLM's recipes set them.</summary>
    public static readonly LoraOptions Lora = new() { Rank = 16, Alpha = 32, Dropout = 0.05, TargetModules = LoraOptions.AllLlamaProjections };

    const double LearningRate = 5e-5;
    const double MaxGradNorm = 1.0;

    /// <summary>One precision in this process: loads <see cref="TrainStepOptions.Checkpoint"/> with that base, trains, measures.</summary>
    public static StepMeasurement Run(TrainStepOptions options, string precision, bool activationCheckpointing, TextWriter log)
    {
        // Explicit, so the result does not depend on OMP_NUM_THREADS or the machine's core count.
        torch.set_num_threads(options.Threads);
        torch.manual_seed(options.Seed); // the dropout masks, so that a rerun repeats the losses exactly

        var build = Stopwatch.StartNew();
        var weights = BaseWeights.Parse(precision);
        using var model = ModelLoader.Load(options.Checkpoint, weights);
        model.ActivationCheckpointing = activationCheckpointing;
        var sites = LoraInjector.Inject(model, Lora with { Dropout = options.LoraDropout }, new Generator((ulong)options.Seed));
        model.train(); // LoRA dropout active, as in fine-tuning
        var named = sites.SelectMany(s => new[]
        {
            (s.ModulePath + ".lora_A.weight", s.Layer.LoraA),
            (s.ModulePath + ".lora_B.weight", s.Layer.LoraB),
        }).ToList();
        var trainable = named.Select(p => p.Item2).ToList();
        using var optimizer = new AdamW(named);
        build.Stop();
        long rssAfterBuild = ProcessMemory.RssBytes();

        var tokens = new Generator((ulong)options.Seed + 1);
        var stepSeconds = new List<double>();
        var cpuSeconds = new List<double>();
        var losses = new List<double>();
        for (int i = 0; i < options.Warmup + options.Steps; i++)
        {
            using var scope = NewDisposeScope();
            var inputIds = randint(0, SmolLm135M.VocabSize, new long[] { options.Batch, options.Seq }, ScalarType.Int64, generator: tokens);
            var labels = inputIds.clone();

            var cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
            var watch = Stopwatch.StartNew();
            var (loss, _) = CausalLmStep.ForwardBackward(model, inputIds, labels, attentionMask: null, lossScale: 1.0, options.LossChunk);
            nn.utils.clip_grad_norm_(trainable, MaxGradNorm);
            optimizer.Step(LearningRate);
            optimizer.ZeroGrad();
            watch.Stop();
            double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalSeconds;

            bool timed = i >= options.Warmup;
            log.WriteLine($"fedllm {(timed ? "timed" : "warmup")} step {i}: {watch.Elapsed.TotalSeconds:F2} s (cpu {cpu:F1} s) loss {loss:F4}");
            if (timed)
            {
                stepSeconds.Add(watch.Elapsed.TotalSeconds);
                cpuSeconds.Add(cpu);
                losses.Add(loss);
            }
        }

        long trainableCount = trainable.Sum(p => p.numel());
        long peak = ProcessMemory.PeakRssBytes(); // before the GEMM microbenchmark allocates its own operands
        double ceiling = GemmCeiling.FlopsPerSecond(SmolLm135M, (long)options.Batch * options.Seq, weights.ComputeDtype);
        return new StepMeasurement
        {
            Implementation = FedLlm.Runtime.AllocatorPolicy.Applied ? "fedllm" : "fedllm, glibc malloc defaults",
            Precision = precision,
            ActivationCheckpointing = activationCheckpointing,
            StepFlops = BenchModels.StepFlops(SmolLm135M, trainableCount, options.Batch, options.Seq),
            CeilingFlopsPerSecond = ceiling,
            Threads = torch.get_num_threads(),
            TokensPerStep = (long)options.Batch * options.Seq,
            StepSeconds = stepSeconds,
            CpuStepSeconds = cpuSeconds,
            Losses = losses,
            PeakRssBytes = peak,
            RssAfterBuildBytes = rssAfterBuild,
            BuildSeconds = build.Elapsed.TotalSeconds,
            TrainableParameters = trainableCount,
        };
    }
}
