using System.Globalization;
using System.Runtime.InteropServices;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Quantization;
using FedLlm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>
/// <c>memory-accounting</c>: where the peak RSS of one training step of the <c>train-step</c> shape goes. One process,
/// one precision: a warm-up step through <see cref="CausalLmStep"/>, then the same step written out phase by phase
/// (decoder layer by layer, each loss chunk, backward, AdamW), with glibc's heap statistics and the resident set at
/// each boundary, and the tensors one decoder layer's attention block, MLP block and RMSNorm keep for backward
/// (measured as the growth of live heap bytes while one runs on a leaf input).
/// </summary>
/// <remarks>
/// libtorch allocates CPU tensors with malloc, so glibc's in-use bytes (ordinary chunks + mmapped chunks) are the live
/// tensors plus the runtime's own small allocations; RSS minus in-use is what the allocator holds without a tensor in it.
/// </remarks>
public static class MemoryAccounting
{
    public const string Usage = """
          memory-accounting  where one train-step's peak RSS goes (phase by phase, glibc heap statistics)
            --base-dtype D  fp32 | bf16 | int8 | nf4        default fp32
            --checkpoint DIR, --batch N, --seq N, --threads N, --loss-chunk N, --lora-dropout P, --seed N as train-step
        """;

    public static int Run(IReadOnlyList<string> args)
    {
        var options = TrainStepOptions.Parse(args);
        string precision = options.Precisions[0];
        torch.set_num_threads(options.Threads);
        BenchModels.EnsureCheckpoint(options.Checkpoint, FedLlmTrainStep.SmolLm135M, ScalarType.Float32, options.Seed, Console.Error);
        var rows = new List<(string Moment, Heap Heap)>();
        void Mark(string moment) => rows.Add((moment, Heap.Now()));
        using (ones(1)) { }
        Mark("runtime (libtorch loaded)");

        using var model = ModelLoader.Load(options.Checkpoint, BaseWeights.Parse(precision));
        long modelBytes = BenchModels.ModelBytes(model);
        var sites = LoraInjector.Inject(model, FedLlmTrainStep.Lora with { Dropout = options.LoraDropout }, new Generator((ulong)options.Seed));
        model.train();
        var named = sites.SelectMany(s => new[] { (s.ModulePath + ".lora_A.weight", s.Layer.LoraA), (s.ModulePath + ".lora_B.weight", s.Layer.LoraB) }).ToList();
        using var optimizer = new AdamW(named);
        Mark("model loaded, LoRA injected");

        var tokens = new Generator((ulong)options.Seed + 1);
        using (NewDisposeScope())
        {
            var ids = randint(0, model.Config.VocabSize, new long[] { options.Batch, options.Seq }, ScalarType.Int64, generator: tokens);
            CausalLmStep.ForwardBackward(model, ids, ids, attentionMask: null, lossScale: 1.0, options.LossChunk);
            optimizer.ClipGradientNorm(1.0);
            optimizer.Step(5e-5);
            optimizer.ZeroGrad();
        }
        Mark("after warm-up step (AdamW state exists)");

        var layerGrowth = new List<long>();
        var cpuStart = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;
        long faultsStart = ProcessMemory.MinorFaults();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        using (NewDisposeScope())
        {
            var ids = randint(0, model.Config.VocabSize, new long[] { options.Batch, options.Seq }, ScalarType.Int64, generator: tokens);
            long B = ids.shape[0], T = ids.shape[1];
            using var rotary = new RotaryEmbedding(model.Config);
            using var positions = arange(0, T, ScalarType.Int64).unsqueeze(0).expand(B, T);
            var (cos, sin) = rotary.Tables(positions, model.Dtype);
            Mark("step start");
            Tensor h = model.Model.EmbedTokens.forward(ids);
            foreach (var layer in model.Model.Layers)
            {
                long before = Heap.Now().InUse;
                var next = layer.Forward(h, cos, sin, null, null);
                h.Dispose();
                h = next;
                layerGrowth.Add(Heap.Now().InUse - before);
            }
            var hidden = model.Model.FinalNorm.forward(h);
            h.Dispose();
            Mark("after decoder forward");

            // The loss as CausalLmStep computes it (labels = ids, every token labelled).
            var shiftedHidden = hidden.narrow(1, 0, T - 1).reshape(-1, hidden.shape[2]);
            var shiftedLabels = ids.narrow(1, 1, T - 1).reshape(-1);
            var leaf = shiftedHidden.detach().requires_grad_(true);
            long rowsCount = leaf.shape[0];
            int chunk = Training.LossChunk.Rows(options.LossChunk, model);
            for (long start = 0; start < rowsCount; start += chunk)
            {
                using var chunkScope = NewDisposeScope();
                long length = Math.Min(chunk, rowsCount - start);
                var logits = model.Head(leaf.narrow(0, start, length));
                var logits32 = logits.dtype == ScalarType.Float32 ? logits : logits.to(ScalarType.Float32);
                var chunkLoss = nn.functional.cross_entropy(logits32, shiftedLabels.narrow(0, start, length), reduction: nn.Reduction.Sum);
                if (start == 0) Mark("loss chunk 1: logits + cross-entropy forward");
                (chunkLoss * (1.0 / rowsCount)).backward();
                if (start == 0) Mark("loss chunk 1: after its backward");
            }
            Mark("after all loss chunks");
            shiftedHidden.backward(new[] { leaf.grad! });
            Mark("after decoder backward");
            optimizer.ClipGradientNorm(1.0);
            optimizer.Step(5e-5);
            optimizer.ZeroGrad();
        }
        Mark("step end (scope disposed)");
        double stepSeconds = watch.Elapsed.TotalSeconds;
        double cpuSeconds = (System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalSeconds;

        var blocks = BlockSavedBytes(model, options);

        static string G(long b) => (b / (1024.0 * 1024 * 1024)).ToString("F2", CultureInfo.InvariantCulture);
        static string M(long b) => (b / 1e6).ToString("F1", CultureInfo.InvariantCulture);
        Console.WriteLine($"precision {precision}, batch {options.Batch} × {options.Seq}, LoRA dropout {options.LoraDropout}, loss chunk {options.LossChunk}, model {M(modelBytes)} MB; load average {File.ReadAllText("/proc/loadavg").Trim()}");
        Console.WriteLine("| moment | RSS GiB | peak RSS so far GiB | in use: heap + mmapped GiB | free in heap GiB | RSS − in use GiB |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        foreach (var (moment, heap) in rows)
            Console.WriteLine($"| {moment} | {G(heap.Rss)} | {G(heap.PeakRss)} | {G(heap.InUse)} ({G(heap.HeapInUse)} + {G(heap.Mmapped)}) | {G(heap.FreeInHeap)} | {G(heap.Rss - heap.InUse)} |");
        Console.WriteLine($"measured step (probes included, under load unless the load average says otherwise): {stepSeconds:F1} s wall, {cpuSeconds:F1} CPU s, {ProcessMemory.MinorFaults() - faultsStart} minor page faults");
        Console.WriteLine($"live bytes added per decoder layer in the forward (MB): {string.Join(", ", layerGrowth.Select(M))}");
        Console.WriteLine($"median per layer {M(layerGrowth.Order().ElementAt(layerGrowth.Count / 2))} MB (includes the layer's output, the next layer's input)");
        foreach (var (name, bytes) in blocks) Console.WriteLine($"kept for backward by {name}: {M(bytes)} MB");
        return 0;
    }

    /// <summary>Live bytes an attention block, an MLP block and an RMSNorm of layer 0 leave behind for backward (their
    /// output excluded), each run on a fresh leaf input of the step's shape.</summary>
    static List<(string, long)> BlockSavedBytes(LlamaForCausalLM model, TrainStepOptions options)
    {
        var c = model.Config;
        var layer = model.Model.Layers[0];
        var result = new List<(string, long)>();
        using var scope = NewDisposeScope();
        using var rotary = new RotaryEmbedding(c);
        using var positions = arange(0, options.Seq, ScalarType.Int64).unsqueeze(0).expand(options.Batch, options.Seq);
        var (cos, sin) = rotary.Tables(positions, model.Dtype);
        long Kept(Func<Tensor, Tensor> block)
        {
            using var x = randn(new long[] { options.Batch, options.Seq, c.HiddenSize }, model.Dtype).requires_grad_(true);
            long before = Heap.Now().InUse;
            using var output = block(x);
            long kept = Heap.Now().InUse - before - output.NumberOfElements * output.ElementSize;
            return kept;
        }
        result.Add(("self_attn (q/k/v/o with LoRA, RoPE, SDPA)", Kept(x => layer.SelfAttention.Forward(x, cos, sin, null, null))));
        result.Add(("mlp (gate/up/down with LoRA, SiLU·up)", Kept(x => layer.Mlp.forward(x))));
        using var norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, model.Dtype);
        result.Add(("an RMSNorm", Kept(x => norm.forward(x))));
        return result;
    }

    /// <summary>glibc's mallinfo2 and the resident set at one moment.</summary>
    readonly record struct Heap(long HeapInUse, long Mmapped, long FreeInHeap, long Rss, long PeakRss)
    {
        public long InUse => HeapInUse + Mmapped;

        public static Heap Now()
        {
            var info = mallinfo2();
            return new Heap((long)info.uordblks, (long)info.hblkhd, (long)info.fordblks, ProcessMemory.RssBytes(), ProcessMemory.PeakRssBytes());
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    struct MallInfo2
    {
        public nuint arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
    }

    [DllImport("libc", EntryPoint = "mallinfo2")]
    static extern MallInfo2 mallinfo2();
}
