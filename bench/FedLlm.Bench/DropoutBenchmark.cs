using System.Diagnostics;
using FedLlm.Peft;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>
/// LoRA dropout alone, on the SmolLM-135M training step's shapes (batch 4 × 512; per layer the inputs of q, k, v, o, gate,
/// up at width 576 and of down at 1536; 30 layers): the time to draw one step's keep-masks the way LoraLinear drew them
/// before (<c>rand</c> + <c>ge</c> on one torch generator) and with <see cref="DropoutMask"/>, and the bytes autograd keeps
/// per layer for the down projections: the plain ops (the dropped float input of each projection plus its bool mask) and
/// the fused node (<see cref="LoraDownProjection"/>: the masks; x itself is shared with what every adapter keeps
/// without dropout).
/// </summary>
public static class DropoutBenchmark
{
    public const string Usage = "dropout [--threads 2] [--repeats 3] [--batch 4] [--seq 512]";

    public static int Run(IReadOnlyList<string> arguments)
    {
        int threads = 2, repeats = 3, batch = 4, seq = 512;
        for (int i = 0; i < arguments.Count; i++)
        {
            string Value() => i + 1 < arguments.Count ? arguments[++i] : throw new ArgumentException($"{arguments[i]} needs a value");
            switch (arguments[i])
            {
                case "--threads": threads = int.Parse(Value()); break;
                case "--repeats": repeats = int.Parse(Value()); break;
                case "--batch": batch = int.Parse(Value()); break;
                case "--seq": seq = int.Parse(Value()); break;
                default: Console.Error.WriteLine($"unknown option '{arguments[i]}'\n{Usage}"); return 2;
            }
        }
        torch.set_num_threads(threads);
        const double p = 0.05;
        const int layers = 30;
        int[] widths = [576, 576, 576, 576, 576, 576, 1536]; // q k v o gate up down
        var inputs = widths.Distinct().ToDictionary(w => w, w => zeros([batch, seq, w]));
        long elements = layers * widths.Sum(w => (long)batch * seq * w);
        Console.WriteLine($"dropout masks of one step: {elements / 1e6:F0} M elements ({layers} layers × 7 inputs, batch {batch} × {seq}), p {p}, {threads} threads, load average {File.ReadAllText("/proc/loadavg").Trim()}");
        Console.WriteLine("| masks | wall s (best of " + repeats + ") | CPU s |");
        Console.WriteLine("|---|---:|---:|");
        using var generator = new Generator(1);
        Measure("rand + ge (one torch generator, serial)", repeats, () =>
        {
            for (int l = 0; l < layers; l++)
                foreach (int w in widths)
                {
                    using var uniform = rand(inputs[w].shape, ScalarType.Float32, generator: generator);
                    using var keep = uniform.ge(p);
                }
        });
        Measure("DropoutMask.Keep (counter-based, parallel)", repeats, () =>
        {
            for (int l = 0; l < layers; l++)
                foreach (int w in widths)
                    DropoutMask.Keep(inputs[w], p, generator).Dispose();
        });

        // The adapter path alone, forward and backward over the step's 210 inputs (all graphs alive until backward, as in a
        // step): the plain ops LoraLinear used before, and LoraLinear now (base of 16 outputs, so its GEMM is small).
        Console.WriteLine("| adapter path, forward + backward of one step | wall s (best of " + repeats + ") | CPU s |");
        Console.WriteLine("|---|---:|---:|");
        var x = inputs.ToDictionary(kv => kv.Key, kv => randn(kv.Value.shape).requires_grad_(true));
        var loras = widths.Distinct().ToDictionary(w => w, w =>
        {
            var layer = new LoraLinear(Quantization.DenseLinear.Create(w, 16, false, ScalarType.Float32, CPU),
                new LoraOptions { Rank = 16, Alpha = 32, Dropout = p }, new Generator(3)) { DropoutGenerator = new Generator(4) };
            layer.train();
            return layer;
        });
        Measure("plain ops: rand + ge, x · keep · 1/(1−p), A, B", repeats, () =>
        {
            using var scope = NewDisposeScope();
            var outputs = new List<Tensor>();
            for (int l = 0; l < layers; l++)
                foreach (int w in widths)
                {
                    var keep = rand(x[w].shape, ScalarType.Float32, generator: generator).ge(p);
                    var down = nn.functional.linear((x[w] * keep).mul(1.0 / (1.0 - p)), loras[w].LoraA);
                    outputs.Add(nn.functional.linear(down, loras[w].LoraB).sum());
                }
            stack(outputs).sum().backward();
        });
        Measure("LoraLinear now: DropoutMask + LoraDownProjection", repeats, () =>
        {
            using var scope = NewDisposeScope();
            var outputs = new List<Tensor>();
            for (int l = 0; l < layers; l++)
                foreach (int w in widths) outputs.Add(loras[w].forward(x[w]).sum());
            stack(outputs).sum().backward();
        });
        foreach (var layer in loras.Values) layer.eval();
        Measure("LoraLinear, dropout off (eval)", repeats, () =>
        {
            using var scope = NewDisposeScope();
            var outputs = new List<Tensor>();
            for (int l = 0; l < layers; l++)
                foreach (int w in widths) outputs.Add(loras[w].forward(x[w]).sum());
            stack(outputs).sum().backward();
        });

        // Saved for backward per layer: the plain ops keep each projection's dropped float input and its mask; the node keeps
        // x (and the mask's 16-byte key), which without dropout linear(x, A) keeps too (one per distinct input: q/k/v share
        // one, gate/up one).
        long tokens = (long)batch * seq;
        long plain = widths.Sum(w => tokens * w * (4L + 1));
        long node = tokens * (576 + 576 + 576 + 1536) * 4L; // the same with dropout and without
        Console.WriteLine($"saved per layer by the LoRA down projections: plain ops {plain / 1e6:F1} MB, the node (with or without dropout) {node / 1e6:F1} MB; × {layers} layers: {plain * layers / 1e9:F2} / {node * layers / 1e9:F2} GB");
        foreach (var t in inputs.Values) t.Dispose();
        return 0;
    }

    static void Measure(string name, int repeats, Action run)
    {
        double best = double.MaxValue, cpuOfBest = 0;
        for (int r = 0; r < repeats; r++)
        {
            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            var watch = Stopwatch.StartNew();
            run();
            double wall = watch.Elapsed.TotalSeconds;
            if (wall < best) (best, cpuOfBest) = (wall, (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds);
        }
        Console.WriteLine($"| {name} | {best:F3} | {cpuOfBest:F2} |");
    }
}
