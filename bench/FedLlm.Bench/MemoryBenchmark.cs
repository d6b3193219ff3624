using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Quantization;
using FedLlm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>What one base precision costs on a Llama-3.2-1B-shaped checkpoint stored in bf16: load, then one LoRA step.</summary>
public sealed record MemoryMeasurement
{
    [JsonPropertyName("precision")] public required string Precision { get; init; }
    [JsonPropertyName("runtime_rss_bytes")] public long RuntimeRssBytes { get; init; }
    [JsonPropertyName("model_bytes")] public long ModelBytes { get; init; }
    [JsonPropertyName("load_peak_rss_bytes")] public long LoadPeakRssBytes { get; init; }
    [JsonPropertyName("load_seconds")] public double LoadSeconds { get; init; }
    [JsonPropertyName("step_peak_rss_bytes")] public long StepPeakRssBytes { get; init; }
    [JsonPropertyName("step_seconds")] public double StepSeconds { get; init; }
    [JsonPropertyName("loss")] public double Loss { get; init; }
}

/// <summary>
/// <c>memory</c>: peak RSS of loading a Llama-3.2-1B-shaped random checkpoint (bf16 safetensors, written once to /tmp)
/// and of one training step at batch 1 × 512 (LoRA r16 on all seven projections), per base precision, each precision
/// in its own child process.
/// </summary>
public static class MemoryBenchmark
{
    public const string Usage = """
        usage: FedLlm.Bench memory [--precisions fp32,bf16,int8,nf4] [--checkpoint DIR] [--seq N] [--threads N] [--json PATH]
                                   [--loss-chunk N (default 1024)] [--activation-checkpointing]
          --checkpoint DIR  default /tmp/fedllm-bench-llama32-1b-bf16 (written once, 2.5 GB)
        """;

    public static int Run(IReadOnlyList<string> args)
    {
        var precisions = new[] { "fp32", "bf16", "int8", "nf4" }.ToList();
        string checkpoint = Path.Combine(Path.GetTempPath(), "fedllm-bench-llama32-1b-bf16");
        string seq = "512", threads = "2", json = "memory-result.json", lossChunk = "1024";
        bool checkpointing = false;
        for (int i = 0; i < args.Count; i++)
        {
            string Value() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--precisions": precisions = Value().Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList(); break;
                case "--checkpoint": checkpoint = Value(); break;
                case "--seq": seq = Value(); break;
                case "--threads": threads = Value(); break;
                case "--json": json = Value(); break;
                case "--loss-chunk": lossChunk = Value(); break;
                case "--activation-checkpointing": checkpointing = true; break;
                default: Console.Error.WriteLine($"unknown option '{args[i]}'\n{Usage}"); return 2;
            }
        }
        foreach (var p in precisions) BasePrecisionNames.Parse(p, "--precisions");
        BenchModels.EnsureCheckpoint(checkpoint, BenchModels.Llama32_1B, ScalarType.BFloat16, seed: 1, Console.Error);
        var results = precisions.Select(p => ChildProcess.Run<MemoryMeasurement>(
            new[] { "memory-one", "--base-dtype", p, "--checkpoint", checkpoint, "--seq", seq, "--threads", threads, "--loss-chunk", lossChunk }
                .Concat(checkpointing ? new[] { "--activation-checkpointing" } : Array.Empty<string>()), Console.Error)).ToList();

        static string Gib(long b) => (b / (1024.0 * 1024 * 1024)).ToString("F2", CultureInfo.InvariantCulture);
        var bf16 = results.FirstOrDefault(r => r.Precision == "bf16");
        Console.WriteLine($"| base | model GiB | runtime GiB | peak RSS load GiB | load s | peak RSS load + step GiB | step s | vs bf16 (step peak) |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var r in results)
        {
            string ratio = bf16 is null ? "" : $"{(double)r.StepPeakRssBytes / bf16.StepPeakRssBytes:F2}×";
            Console.WriteLine($"| {r.Precision} | {Gib(r.ModelBytes)} | {Gib(r.RuntimeRssBytes)} | {Gib(r.LoadPeakRssBytes)} | {r.LoadSeconds:F1} | {Gib(r.StepPeakRssBytes)} | {r.StepSeconds:F1} | {ratio} |");
        }
        if (json.Length > 0)
        {
            File.WriteAllText(json, JsonSerializer.Serialize(new { checkpoint, seq, threads, lossChunk, checkpointing, loadavg_at_end = File.ReadAllText("/proc/loadavg").Trim(), results },
                new JsonSerializerOptions { WriteIndented = true }) + "\n");
            Console.WriteLine($"wrote {Path.GetFullPath(json)}");
        }
        return 0;
    }

    /// <summary>The child: load with one precision, one step, print the measurement as JSON.</summary>
    public static int RunOne(IReadOnlyList<string> args)
    {
        string precision = args[args.ToList().IndexOf("--base-dtype") + 1];
        string checkpoint = args[args.ToList().IndexOf("--checkpoint") + 1];
        int seq = int.Parse(args[args.ToList().IndexOf("--seq") + 1], CultureInfo.InvariantCulture);
        torch.set_num_threads(int.Parse(args[args.ToList().IndexOf("--threads") + 1], CultureInfo.InvariantCulture));
        using (ones(1)) { } // libtorch loaded, so the runtime's own footprint is apart from the model's
        long runtime = ProcessMemory.RssBytes();

        var watch = Stopwatch.StartNew();
        using var model = ModelLoader.Load(checkpoint, BaseWeights.Parse(precision));
        model.ActivationCheckpointing = args.Contains("--activation-checkpointing");
        int lossChunk = int.Parse(args[args.ToList().IndexOf("--loss-chunk") + 1], CultureInfo.InvariantCulture);
        double loadSeconds = watch.Elapsed.TotalSeconds;
        long loadPeak = ProcessMemory.PeakRssBytes();
        long modelBytes = BenchModels.ModelBytes(model);
        Console.Error.WriteLine($"{precision}: loaded in {loadSeconds:F1} s, model {modelBytes / 1e9:F2} GB, peak RSS {loadPeak / 1e9:F2} GB");

        var sites = LoraInjector.Inject(model, FedLlmTrainStep.Lora with { Dropout = 0.05 }, new Generator(1));
        LoraInjector.SetDropoutGenerator(model, new Generator(2));
        model.train();
        var named = sites.SelectMany(s => new[] { (s.ModulePath + ".lora_A.weight", s.Layer.LoraA), (s.ModulePath + ".lora_B.weight", s.Layer.LoraB) }).ToList();
        using var optimizer = new AdamW(named);
        watch.Restart();
        double loss;
        using (NewDisposeScope())
        {
            var ids = randint(0, model.Config.VocabSize, new long[] { 1, seq }, ScalarType.Int64, generator: new Generator(3));
            (loss, _) = CausalLmStep.ForwardBackward(model, ids, ids, attentionMask: null, lossScale: 1.0, chunkTokens: lossChunk);
            optimizer.ClipGradientNorm(1.0);
            optimizer.Step(5e-5);
            optimizer.ZeroGrad();
        }
        double stepSeconds = watch.Elapsed.TotalSeconds;
        var result = new MemoryMeasurement
        {
            Precision = precision, RuntimeRssBytes = runtime, ModelBytes = modelBytes, LoadPeakRssBytes = loadPeak, LoadSeconds = loadSeconds,
            StepPeakRssBytes = ProcessMemory.PeakRssBytes(), StepSeconds = stepSeconds, Loss = loss,
        };
        Console.WriteLine(JsonSerializer.Serialize(result));
        return 0;
    }
}
