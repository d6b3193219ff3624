using System.Diagnostics;
using FedLlm.Modeling;
using FedLlm.Quantization;
using FedLlm.Runtime;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>
/// Speed and peak memory of loading a checkpoint, each load in a child process (peak RSS is per process): by default a
/// SmolLM-135M-shaped checkpoint stored in BF16 (3 shards), written by one child and loaded into fp32 and bf16; with
/// <c>--checkpoint</c> any folder, with any base precision. Loading must not hold a second copy of the weights: the peak
/// should be the runtime plus the model, not plus the file as well. File GB/s is the safetensors bytes over the load's
/// wall time.
/// </summary>
public static class LoadBenchmark
{
    static readonly LlamaConfig SmolLm135M = new()
    {
        VocabSize = 49152, HiddenSize = 576, IntermediateSize = 1536, NumHiddenLayers = 30, NumAttentionHeads = 9,
        NumKeyValueHeads = 3, HeadDim = 64, RmsNormEps = 1e-5, TieWordEmbeddings = true, MaxPositionEmbeddings = 2048,
    };

    public const string Usage = """
        usage: FedLlm.Bench load [--checkpoint DIR [--create fp32|bf16] --precisions fp32,bf16,int8,nf4]
          without --checkpoint: writes a SmolLM-135M-shaped bf16 checkpoint (3 shards) to /tmp, loads it into fp32 and bf16
          --checkpoint DIR: loads DIR (e.g. /tmp/fedllm-bench-llama32-1b-bf16, which `memory` writes) with each precision
          --create DTYPE: first writes a random Llama-3.2-1B-shaped checkpoint in DTYPE to DIR if DIR has none
        Each load runs in its own child process; wall and CPU seconds cover ModelLoader.Load only. "first read" is one
        pass over every parameter right after the load (a finiteness scan): the page faults a memory-mapped load leaves to
        the first forward pass, measured apart; the peak RSS is taken after it.
        """;

    public static int Run(IReadOnlyList<string> arguments)
    {
        if (arguments.Count == 2 && arguments[0] == "--write") return Write(arguments[1]);
        if (arguments.Count == 3 && arguments[0] == "--read") return Read(arguments[1], arguments[2]);
        string? checkpoint = null, create = null;
        var precisions = new List<string> { "float32", "bfloat16" };
        for (int i = 0; i < arguments.Count; i++)
        {
            string Value() => i + 1 < arguments.Count ? arguments[++i] : throw new ArgumentException($"{arguments[i]} needs a value\n{Usage}");
            switch (arguments[i])
            {
                case "--checkpoint": checkpoint = Value(); break;
                case "--create": create = Value(); break;
                case "--precisions": precisions = Value().Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList(); break;
                default: Console.Error.WriteLine($"unknown option '{arguments[i]}'\n{Usage}"); return 2;
            }
        }
        foreach (var p in precisions) BaseWeights.Parse(p, "--precisions");
        if (create is not null)
        {
            if (checkpoint is null) { Console.Error.WriteLine($"--create needs --checkpoint\n{Usage}"); return 2; }
            var dtype = create switch
            {
                "fp32" => ScalarType.Float32,
                "bf16" => ScalarType.BFloat16,
                _ => throw new ArgumentException($"--create {create}: expected fp32 or bf16"),
            };
            BenchModels.EnsureCheckpoint(checkpoint, BenchModels.Llama32_1B, dtype, seed: 1, Console.Error);
        }
        string directory = checkpoint ?? Path.Combine(Path.GetTempPath(), $"fedllm-load-bench-{Environment.ProcessId}");
        try
        {
            if (checkpoint is null) Child("--write", directory);
            Console.WriteLine("| load into | file GB | model MB | load s | load CPU s | file GB/s | first read s | first read CPU s | runtime before load | peak RSS after first read | peak − runtime − model |");
            Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
            foreach (var p in precisions) Child("--read", directory, p);
        }
        finally
        {
            if (checkpoint is null && Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
        return 0;
    }

    static void Child(params string[] arguments)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = false, UseShellExecute = false };
        foreach (var a in new[] { "load" }.Concat(arguments)) start.ArgumentList.Add(a);
        using var child = Process.Start(start)!;
        child.WaitForExit();
        if (child.ExitCode != 0) throw new InvalidOperationException($"load benchmark child {string.Join(' ', arguments)} failed with {child.ExitCode}");
    }

    static int Write(string directory)
    {
        using var model = LlamaForCausalLM.CreateRandom(SmolLm135M, seed: 1, std: 0.02, dtype: ScalarType.BFloat16);
        ModelLoader.Save(directory, model, maxShardBytes: 100_000_000);
        return 0;
    }

    static int Read(string directory, string precisionName)
    {
        var weights = BaseWeights.Parse(precisionName, "--precisions");
        using (ones(1)) { } // load libtorch first, so its own footprint is measured apart from the model's
        long runtime = TorchRuntime.PeakResidentBytes() ?? 0;
        var process = Process.GetCurrentProcess();
        var cpuBefore = process.TotalProcessorTime;
        var watch = Stopwatch.StartNew();
        using var model = ModelLoader.Load(directory, weights);
        double seconds = watch.Elapsed.TotalSeconds;
        process.Refresh();
        double cpuSeconds = (process.TotalProcessorTime - cpuBefore).TotalSeconds;
        // Every parameter read once: the pages a mapped load has not touched yet are faulted in here.
        var cpuBeforeRead = process.TotalProcessorTime;
        watch.Restart();
        bool finite = model.parameters().All(p => FedLlm.Checkpoints.FiniteTensors.AllFinite(p));
        double readSeconds = watch.Elapsed.TotalSeconds;
        process.Refresh();
        double readCpuSeconds = (process.TotalProcessorTime - cpuBeforeRead).TotalSeconds;
        if (!finite) throw new InvalidOperationException("a loaded parameter is not finite");
        long fileBytes = Directory.GetFiles(directory, "*.safetensors").Sum(f => new FileInfo(f).Length);
        long bytes = BenchModels.ModelBytes(model);
        long peak = TorchRuntime.PeakResidentBytes() ?? 0;
        static string Mb(long b) => $"{b / 1e6:F0} MB";
        Console.WriteLine($"| {precisionName} | {fileBytes / 1e9:F2} | {Mb(bytes)} | {seconds:F2} | {cpuSeconds:F2} | {fileBytes / 1e9 / seconds:F2} | {readSeconds:F2} | {readCpuSeconds:F2} | {Mb(runtime)} | {Mb(peak)} | {Mb(peak - runtime - bytes)} |");
        return 0;
    }
}
