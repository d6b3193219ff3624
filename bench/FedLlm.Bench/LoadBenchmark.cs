using System.Diagnostics;
using FedLlm.Modeling;
using FedLlm.Runtime;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>
/// Peak memory of loading a checkpoint: a SmolLM-135M-shaped checkpoint stored in BF16 (3 shards) is written by one
/// child process and loaded by another (peak RSS is per process), into fp32 and into bf16. Loading must not hold a
/// second copy of the weights: the peak should be the runtime plus the model, not plus the file as well.
/// </summary>
public static class LoadBenchmark
{
    static readonly LlamaConfig SmolLm135M = new()
    {
        VocabSize = 49152, HiddenSize = 576, IntermediateSize = 1536, NumHiddenLayers = 30, NumAttentionHeads = 9,
        NumKeyValueHeads = 3, HeadDim = 64, RmsNormEps = 1e-5, TieWordEmbeddings = true, MaxPositionEmbeddings = 2048,
    };

    public static int Run(IReadOnlyList<string> arguments)
    {
        if (arguments.Count == 2 && arguments[0] == "--write") return Write(arguments[1]);
        if (arguments.Count == 3 && arguments[0] == "--read") return Read(arguments[1], arguments[2]);
        string directory = Path.Combine(Path.GetTempPath(), $"fedllm-load-bench-{Environment.ProcessId}");
        try
        {
            Child("--write", directory);
            Console.WriteLine("| load into | model bytes | runtime before load | peak RSS after load | peak − runtime − model |");
            Console.WriteLine("|---|---|---|---|---|");
            Child("--read", directory, "float32");
            Child("--read", directory, "bfloat16");
        }
        finally
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
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

    static int Read(string directory, string dtypeName)
    {
        var dtype = dtypeName == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        using (ones(1)) { } // load libtorch first, so its own footprint is measured apart from the model's
        long runtime = TorchRuntime.PeakResidentBytes() ?? 0;
        using var model = ModelLoader.Load(directory, dtype);
        long bytes = model.parameters().Sum(p => p.NumberOfElements * p.ElementSize);
        long peak = TorchRuntime.PeakResidentBytes() ?? 0;
        static string Mb(long b) => $"{b / 1e6:F0} MB";
        Console.WriteLine($"| {dtypeName} | {Mb(bytes)} | {Mb(runtime)} | {Mb(peak)} | {Mb(peak - runtime - bytes)} |");
        return 0;
    }
}
