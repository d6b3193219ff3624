using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FedLlm.Defaults;
using FedLlm.Export;
using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Tokenization;
using LLama;
using LLama.Common;
using LLama.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>
/// Greedy decoding with the KV cache on the SmolLM-135M shape: llama.cpp (LLamaSharp's CPU backend) on GGUF f32/f16
/// exports of the same random weights at batch 1, and FedLlm's <see cref="TextGenerator"/> (the path of
/// <c>fedllm generate</c>; serving's BatchDecoder calls the same model forward with the same cache) at batch 1 and 8 in
/// fp32 and bf16. Every engine and setting runs in a child process of its own, so one engine's spinning threads do not
/// slow the other.
/// </summary>
/// <remarks>
/// Prompts are token ids drawn from a seeded generator, not text: both engines see the same ids without a tokenizer in
/// between. The checkpoint folder carries the embedded default's tokenizer only because a GGUF file must hold one (its
/// 512 tokens are padded with unused entries to the 49,152 rows of the model); no generated id is decoded. EOS is
/// ignored on both sides (the checkpoint declares none, and llama.cpp is driven token by token), so every repetition
/// produces exactly the number of new tokens asked for.
/// </remarks>
public static class DecodeBenchmark
{
    public const string Usage =
        "decode [--prompt-tokens 32] [--new-tokens 128] [--repetitions 5] [--threads 2] [--batches 1,8] [--precisions fp32,bf16] " +
        "[--gguf f32,f16] [--skip-llamacpp] [--seed 2023] [--checkpoint DIR] [--json PATH] [--baseline FedLlm.Bench-of-another-build]";

    static readonly string[] Flags =
    [
        "--prompt-tokens", "--new-tokens", "--repetitions", "--threads", "--batches", "--precisions", "--gguf", "--seed",
        "--checkpoint", "--json", "--baseline",
    ];

    /// <summary>The options of one invocation; the children get the same values on their command line.</summary>
    sealed record Options
    {
        public int PromptTokens { get; init; } = 32;
        public int NewTokens { get; init; } = 128;
        public int Repetitions { get; init; } = 5;
        public int Threads { get; init; } = 2;
        public int[] Batches { get; init; } = [1, 8];
        public string[] Precisions { get; init; } = ["fp32", "bf16"];
        public string[] GgufTypes { get; init; } = ["f32", "f16"];
        public bool SkipLlamaCpp { get; init; }
        public long Seed { get; init; } = 2023;
        public string Checkpoint { get; init; } = Path.Combine(Path.GetTempPath(), "fedllm-bench-decode-smollm135m-seed2023");
        public string Json { get; init; } = "";

        /// <summary>Another build's FedLlm.Bench (the commit before a change): its FedLlm children run just before this
        /// build's at each precision and batch, labelled "FedLlm baseline", for before/after in one invocation.</summary>
        public string Baseline { get; init; } = "";

        public static Options Parse(IReadOnlyList<string> arguments)
        {
            for (int i = 0; i < arguments.Count; i++)
            {
                if (arguments[i] == "--skip-llamacpp") continue;
                if (!Flags.Contains(arguments[i])) throw new ArgumentException($"decode: unknown option '{arguments[i]}'");
                if (i + 1 >= arguments.Count) throw new ArgumentException($"decode: {arguments[i]} needs a value");
                i++;
            }
            long seed = long.Parse(BenchArguments.String(arguments, "--seed", "2023"), CultureInfo.InvariantCulture);
            var options = new Options
            {
                PromptTokens = Positive(arguments, "--prompt-tokens", 32),
                NewTokens = Positive(arguments, "--new-tokens", 128),
                Repetitions = Positive(arguments, "--repetitions", 5),
                Threads = Positive(arguments, "--threads", 2),
                Batches = BenchArguments.String(arguments, "--batches", "1,8").Split(',').Select(b => ParsePositive("--batches", b)).ToArray(),
                Precisions = List(arguments, "--precisions", "fp32,bf16", ["fp32", "bf16"]),
                GgufTypes = List(arguments, "--gguf", "f32,f16", ["f32", "f16"]),
                SkipLlamaCpp = arguments.Contains("--skip-llamacpp"),
                Seed = seed,
                Checkpoint = BenchArguments.String(arguments, "--checkpoint", Path.Combine(Path.GetTempPath(), $"fedllm-bench-decode-smollm135m-seed{seed}")),
                Json = BenchArguments.String(arguments, "--json", ""),
                Baseline = BenchArguments.String(arguments, "--baseline", ""),
            };
            if (options.Baseline.Length > 0 && !File.Exists(options.Baseline))
                throw new ArgumentException($"decode: --baseline '{options.Baseline}' is not a file (give the FedLlm.Bench executable of the other build)");
            if (options.NewTokens < 2) throw new ArgumentException("decode: --new-tokens must be at least 2 (one prefill token and one decode step)");
            return options;
        }

        static int Positive(IReadOnlyList<string> arguments, string name, int fallback) =>
            ParsePositive(name, BenchArguments.String(arguments, name, fallback.ToString(CultureInfo.InvariantCulture)));

        static int ParsePositive(string name, string text) =>
            int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) && value > 0
                ? value : throw new ArgumentException($"decode: {name} must be a positive integer, not '{text}'");

        static string[] List(IReadOnlyList<string> arguments, string name, string fallback, string[] allowed)
        {
            var values = BenchArguments.String(arguments, name, fallback).Split(',', StringSplitOptions.RemoveEmptyEntries);
            foreach (var v in values)
                if (!allowed.Contains(v)) throw new ArgumentException($"decode: {name} '{v}' is not one of {string.Join(", ", allowed)}");
            return values;
        }

        /// <summary>The flags a child needs to repeat this measurement's settings.</summary>
        public IEnumerable<string> Common() =>
        [
            "--prompt-tokens", $"{PromptTokens}", "--new-tokens", $"{NewTokens}", "--repetitions", $"{Repetitions}",
            "--threads", $"{Threads}", "--seed", $"{Seed}", "--checkpoint", Checkpoint,
        ];
    }

    public static int Run(IReadOnlyList<string> arguments)
    {
        Options options;
        try
        {
            options = Options.Parse(arguments);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"{e.Message}\n{Usage}");
            return 2;
        }
        EnsureCheckpoint(options, Console.Error);
        var results = new List<DecodeMeasurement>();
        if (!options.SkipLlamaCpp)
            foreach (var type in options.GgufTypes)
                results.Add(ChildProcess.Run<DecodeMeasurement>(["decode-llamacpp", Gguf(options, type), type, .. options.Common()], Console.Error));
        foreach (var precision in options.Precisions)
            foreach (int batch in options.Batches)
            {
                if (options.Baseline.Length > 0)
                    results.Add(ChildProcess.Run<DecodeMeasurement>(options.Baseline, ["decode-fedllm", precision, $"{batch}", .. options.Common()], Console.Error)
                        with { Engine = "FedLlm baseline" });
                results.Add(ChildProcess.Run<DecodeMeasurement>(["decode-fedllm", precision, $"{batch}", .. options.Common()], Console.Error));
            }

        WriteTable(options, results);
        if (options.Json.Length > 0)
        {
            File.WriteAllText(options.Json, JsonSerializer.Serialize(new { options = options, results }, new JsonSerializerOptions { WriteIndented = true }));
            Console.WriteLine($"wrote {Path.GetFullPath(options.Json)}");
        }
        return 0;
    }

    static void WriteTable(Options options, List<DecodeMeasurement> results)
    {
        Console.WriteLine($"SmolLM-135M shape, random weights (seed {options.Seed}), prompt {options.PromptTokens} ids, {options.NewTokens} new tokens, greedy, " +
                          $"{options.Threads} threads, median of {options.Repetitions} repetitions; load average at the end: {DecodeMeasurement.ReadLoadAverage()}");
        var reference = results.FirstOrDefault(r => r is { Engine: "llama.cpp", Precision: "f32" })
                        ?? results.FirstOrDefault(r => r.Engine == "llama.cpp");
        Console.WriteLine("| engine | weights | batch | prefill ms | decode tok/s (all sequences) | best tok/s | × llama.cpp batch 1 | CPU s / token | end-to-end tok/s |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in results)
        {
            string ratio = reference is null ? "–" : $"{r.DecodeTokensPerSecond / reference.DecodeTokensPerSecond:F2}";
            Console.WriteLine($"| {r.Engine} | {r.Precision} | {r.Batch} | {r.MedianPrefillSeconds * 1000:F0} | {r.DecodeTokensPerSecond:F1} | " +
                              $"{r.BestDecodeTokensPerSecond:F1} | {ratio} | {r.CpuSecondsPerToken * 1000:F1} ms | {r.EndToEndTokensPerSecond:F1} |");
        }
        // Greedy agreement: FedLlm fp32 batch 1 against llama.cpp f32 with an F32 KV cache and no flash attention.
        var fedLlm = results.FirstOrDefault(r => r is { Engine: "FedLlm", Precision: "fp32", Batch: 1 });
        var exact = results.FirstOrDefault(r => r is { Engine: "llama.cpp", Precision: "f32" });
        if (fedLlm is not null && exact?.ExactTokens is { } exactTokens)
        {
            int same = fedLlm.Tokens.Zip(exactTokens).TakeWhile(p => p.First == p.Second).Count();
            Console.WriteLine($"greedy tokens, FedLlm fp32 vs llama.cpp f32 (F32 KV cache, no flash attention): {same} of {fedLlm.Tokens.Count} identical before the first difference; " +
                              $"{fedLlm.Tokens.Distinct().Count()} distinct ids in FedLlm's continuation");
            int sameDefault = exact.Tokens.Zip(exactTokens).TakeWhile(p => p.First == p.Second).Count();
            Console.WriteLine($"llama.cpp f32 with its default (timed) settings vs its exact settings: {sameDefault} of {exactTokens.Count} identical before the first difference");
        }
        foreach (var baseline in results.Where(r => r.Engine == "FedLlm baseline"))
        {
            var current = results.FirstOrDefault(r => r.Engine == "FedLlm" && r.Precision == baseline.Precision && r.Batch == baseline.Batch);
            if (current is null) continue;
            int same = current.Tokens.Zip(baseline.Tokens).TakeWhile(p => p.First == p.Second).Count();
            Console.WriteLine($"greedy tokens of the first sequence, FedLlm {baseline.Precision} batch {baseline.Batch} vs the baseline build: " +
                              $"{same} of {current.Tokens.Count} identical before the first difference; decode speed-up {current.DecodeTokensPerSecond / baseline.DecodeTokensPerSecond:F2}×");
        }
    }

    /// <summary>Writes the random SmolLM-135M-shaped checkpoint (fp32 safetensors, the embedded default's tokenizer
    /// beside it for the GGUF) once; later invocations reuse it.</summary>
    static void EnsureCheckpoint(Options options, TextWriter log)
    {
        if (File.Exists(Path.Combine(options.Checkpoint, "tokenizer.json"))) return;
        string partial = options.Checkpoint + ".partial";
        if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
        BenchModels.EnsureCheckpoint(partial, FedLlmTrainStep.SmolLm135M, ScalarType.Float32, options.Seed, log);
        var defaults = EmbeddedDefault.Ensure(m => log.WriteLine(m));
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(defaults.ModelDirectory, file), Path.Combine(partial, file));
        if (Directory.Exists(options.Checkpoint)) Directory.Delete(options.Checkpoint, recursive: true);
        Directory.Move(partial, options.Checkpoint);
    }

    /// <summary>The GGUF export of the checkpoint as <paramref name="type"/>, written by FedLlm's exporter on first use.</summary>
    static string Gguf(Options options, string type)
    {
        string path = Path.Combine(options.Checkpoint, $"model-{type}.gguf");
        if (File.Exists(path)) return path;
        Console.Error.WriteLine($"exporting {path}");
        GgufLlamaExporter.Export(options.Checkpoint, path + ".partial", new GgufExportOptions { WeightType = GgufExportOptions.ParseType(type) });
        File.Move(path + ".partial", path);
        return path;
    }

    /// <summary>Batch · prompt-length token ids, seeded, row b the prompt of sequence b (row 0 is the batch-1 prompt).</summary>
    static long[][] Prompts(Options options, int batch)
    {
        var random = new Random((int)options.Seed);
        return Enumerable.Range(0, batch)
            .Select(_ => Enumerable.Range(0, options.PromptTokens).Select(_ => (long)random.Next(FedLlmTrainStep.SmolLm135M.VocabSize)).ToArray())
            .ToArray();
    }

    static double CpuSeconds() => Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

    /// <summary>Child: FedLlm at one precision and batch size; prints one <see cref="DecodeMeasurement"/> JSON line.</summary>
    public static int RunFedLlm(IReadOnlyList<string> arguments)
    {
        string precision = arguments[0];
        int batch = int.Parse(arguments[1], CultureInfo.InvariantCulture);
        var options = Options.Parse(arguments.Skip(2).ToList());
        torch.set_num_threads(options.Threads);
        var dtype = precision == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;
        using var model = ModelLoader.Load(options.Checkpoint, dtype);
        var generator = new TextGenerator(model, new IdsOnlyTokenizer(model.Config.VocabSize));
        var prompts = Prompts(options, batch);
        var full = new GenerationOptions { MaxNewTokens = options.NewTokens };
        var first = new GenerationOptions { MaxNewTokens = 1 };
        generator.GenerateIds(prompts, full with { MaxNewTokens = 8 }); // warm-up: first-call allocations and kernel selection

        var prefill = new List<double>();
        var decode = new List<double>();
        var cpu = new List<double>();
        IReadOnlyList<long> tokens = [];
        for (int r = 0; r < options.Repetitions; r++)
        {
            // The prefill alone (prompt pass + first token), then the whole generation; decode = whole − prefill.
            var clock = Stopwatch.StartNew();
            generator.GenerateIds(prompts, first);
            double prefillSeconds = clock.Elapsed.TotalSeconds;
            double cpu1 = CpuSeconds();
            clock.Restart();
            var generated = generator.GenerateIds(prompts, full);
            double wholeSeconds = clock.Elapsed.TotalSeconds;
            double cpu2 = CpuSeconds();
            if (generated.Any(g => g.Count != options.NewTokens))
                throw new InvalidOperationException($"FedLlm generated {generated.Min(g => g.Count)} tokens, not {options.NewTokens}");
            prefill.Add(prefillSeconds);
            decode.Add(Math.Max(wholeSeconds - prefillSeconds, 1e-9));
            cpu.Add(cpu2 - cpu1);
            tokens = generated[0];
            Console.Error.WriteLine($"FedLlm {precision} batch {batch} repetition {r + 1}: prefill {prefillSeconds * 1000:F0} ms, whole {wholeSeconds:F2} s");
        }
        Console.WriteLine(JsonSerializer.Serialize(new DecodeMeasurement
        {
            Engine = "FedLlm", Precision = precision, Batch = batch, Threads = options.Threads, PromptTokens = options.PromptTokens,
            NewTokens = options.NewTokens, PrefillSeconds = prefill, DecodeSeconds = decode, CpuSeconds = cpu,
            Tokens = tokens.Select(t => (int)t).ToList(), LoadAverage = DecodeMeasurement.ReadLoadAverage(),
        }));
        return 0;
    }

    /// <summary>Child: llama.cpp on one GGUF at batch 1; prints one <see cref="DecodeMeasurement"/> JSON line.</summary>
    public static int RunLlamaCpp(IReadOnlyList<string> arguments)
    {
        string gguf = arguments[0], type = arguments[1];
        var options = Options.Parse(arguments.Skip(2).ToList());
        NativeLibraryConfig.All.WithLogCallback((level, message) =>
        {
            if (level is LLamaLogLevel.Error or LLamaLogLevel.Warning) Console.Error.Write(message);
        });
        var prompt = Prompts(options, 1)[0].Select(i => (int)i).ToArray();
        int context = options.PromptTokens + options.NewTokens;

        // Timed with llama.cpp's own defaults (F16 KV cache, flash attention as it chooses): what its users run.
        var timed = new ModelParams(gguf)
        {
            ContextSize = (uint)context, BatchSize = (uint)context, UBatchSize = (uint)context, GpuLayerCount = 0,
            Threads = options.Threads, BatchThreads = options.Threads,
        };
        using var weights = LLamaWeights.LoadFromFile(timed);
        var prefill = new List<double>();
        var decode = new List<double>();
        var cpu = new List<double>();
        List<int> tokens = [];
        using (var ctx = weights.CreateContext(timed))
        {
            Greedy(ctx, prompt, 8, out _, out _); // warm-up
            for (int r = 0; r < options.Repetitions; r++)
            {
                double cpu0 = CpuSeconds();
                tokens = Greedy(ctx, prompt, options.NewTokens, out double prefillSeconds, out double decodeSeconds);
                cpu.Add(CpuSeconds() - cpu0);
                prefill.Add(prefillSeconds);
                decode.Add(decodeSeconds);
                Console.Error.WriteLine($"llama.cpp {type} repetition {r + 1}: prefill {prefillSeconds * 1000:F0} ms, decode {decodeSeconds:F2} s");
            }
        }
        // Untimed: the settings under which llama.cpp's F32 logits match FedLlm's fp32 ones, for the token comparison.
        List<int>? exact = null;
        if (type == "f32")
        {
            var exactParameters = new ModelParams(gguf)
            {
                ContextSize = (uint)context, BatchSize = (uint)context, UBatchSize = (uint)context, GpuLayerCount = 0,
                Threads = options.Threads, BatchThreads = options.Threads,
                TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, FlashAttention = false,
            };
            using var ctx = weights.CreateContext(exactParameters);
            exact = Greedy(ctx, prompt, options.NewTokens, out _, out _);
        }
        Console.WriteLine(JsonSerializer.Serialize(new DecodeMeasurement
        {
            Engine = "llama.cpp", Precision = type, Batch = 1, Threads = options.Threads, PromptTokens = options.PromptTokens,
            NewTokens = options.NewTokens, PrefillSeconds = prefill, DecodeSeconds = decode, CpuSeconds = cpu, Tokens = tokens,
            ExactTokens = exact, LoadAverage = DecodeMeasurement.ReadLoadAverage(),
        }));
        return 0;
    }

    /// <summary>Prefill (logits of the last prompt position only), then newTokens − 1 single-token steps, argmax each
    /// time on the host; the same work FedLlm's generator does for one sequence.</summary>
    static List<int> Greedy(LLamaContext context, int[] prompt, int newTokens, out double prefillSeconds, out double decodeSeconds)
    {
        context.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < prompt.Length; i++) batch.Add(prompt[i], i, LLamaSeqId.Zero, logits: i == prompt.Length - 1);
        Check(context.Decode(batch));
        var output = new List<int> { ArgMax(context.NativeHandle.GetLogitsIth(batch.TokenCount - 1)) };
        prefillSeconds = clock.Elapsed.TotalSeconds;
        clock.Restart();
        for (int step = 1; step < newTokens; step++)
        {
            batch.Clear();
            batch.Add(output[^1], prompt.Length + step - 1, LLamaSeqId.Zero, logits: true);
            Check(context.Decode(batch));
            output.Add(ArgMax(context.NativeHandle.GetLogitsIth(0)));
        }
        decodeSeconds = clock.Elapsed.TotalSeconds;
        return output;
    }

    static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    static void Check(DecodeResult result)
    {
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
    }

    /// <summary>A tokenizer for id prompts: the model's vocabulary size, no special tokens (so no EOS ends a sequence
    /// early), and no text.</summary>
    sealed class IdsOnlyTokenizer(int vocabSize) : ITextTokenizer
    {
        public int VocabSize => vocabSize;
        public int? BosTokenId => null;
        public int? EosTokenId => null;
        public int? PadTokenId => 0;
        public string? ChatTemplate => null;
        public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false) => throw new NotSupportedException("the decode benchmark prompts with token ids");
        public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true) => "";
        public int? TokenToId(string token) => null;
    }
}
