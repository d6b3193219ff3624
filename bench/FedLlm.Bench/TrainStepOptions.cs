using System.Globalization;

namespace FedLlm.Bench;

/// <summary>Settings of the <c>train-step</c> benchmark; defaults are the foundation issue's (batch 4 × 512, 2 threads).</summary>
public sealed record TrainStepOptions
{
    public int Steps { get; init; } = 5;
    public int Warmup { get; init; } = 2;
    public int Threads { get; init; } = 2;
    public int Batch { get; init; } = 4;
    public int Seq { get; init; } = 512;

    /// <summary>FedLlm then PyTorch, this many times; on a shared machine, alternating spreads other load over both.</summary>
    public int Rounds { get; init; } = 1;
    public long Seed { get; init; } = 2023;

    /// <summary>Rows of the vocabulary projection computed at once in FedLlm's loss (TrainingOptions.LossChunkTokens).</summary>
    public int LossChunk { get; init; } = new Training.TrainingOptions().LossChunkTokens;

    /// <summary>LoRA dropout on both sides; 0.05 is the issue's setting, 0 shows what the (serial) dropout RNG costs.</summary>
    public double LoraDropout { get; init; } = 0.05;

    public bool SkipPyTorch { get; init; }

    /// <summary>Also run every FedLlm precision with glibc's allocator defaults (the library's policy not applied).</summary>
    public bool AllocatorBaseline { get; init; }

    /// <summary>Base precisions to measure, each in its own child process (peak RSS is per process): fp32, bf16, int8, nf4.</summary>
    public IReadOnlyList<string> Precisions { get; init; } = new[] { "fp32" };

    /// <summary>Activation checkpointing settings to measure: [false], [true] or both.</summary>
    public IReadOnlyList<bool> ActivationCheckpointing { get; init; } = new[] { false };

    /// <summary>Where the random SmolLM-135M-shaped checkpoint (fp32) is written once and loaded by every run.</summary>
    public string Checkpoint { get; init; } = Path.Combine(Path.GetTempPath(), "fedllm-bench-smollm135m-fp32");

    /// <summary>Debian's interpreter: the pyenv <c>python3</c> first on PATH has no torch.</summary>
    public string Python { get; init; } = "/usr/bin/python3";

    public string Script { get; init; } = Path.Combine(AppContext.BaseDirectory, "pytorch", "train_step.py");

    /// <summary>Where the JSON result goes; empty = do not write one.</summary>
    public string Json { get; init; } = "train-step-result.json";

    public const string Usage = """
        usage: FedLlm.Bench [train-step] [options]

          train-step        (default) one LoRA training step of a SmolLM-135M-shaped model, FedLlm vs plain PyTorch
            --steps N       timed steps (median reported)          default 5
            --warmup N      untimed steps first                    default 2
            --threads N     torch intra-op threads, both sides     default 2
            --batch N       sequences per step                     default 4
            --seq N         tokens per sequence                    default 512
            --rounds N      alternate FedLlm and PyTorch N times   default 1
            --seed N        weights, adapters, tokens, dropout     default 2023
            --loss-chunk N  FedLlm loss rows per vocabulary chunk  default 0 = automatic (Training.LossChunk)
            --lora-dropout P LoRA dropout, both sides               default 0.05
            --precisions L  base precisions, comma-separated       default fp32
                            (fp32,bf16,int8,nf4; PyTorch runs fp32 and bf16)
            --base-dtype D  one precision (= --precisions D)
            --activation-checkpointing          recompute layers in backward
            --compare-activation-checkpointing  measure without and with it
            --checkpoint DIR random checkpoint folder (written once) default /tmp/fedllm-bench-smollm135m-fp32
            --skip-pytorch  measure FedLlm only
            --allocator-baseline also run FedLlm with glibc's malloc defaults
                            (MALLOC_ARENA_TEST=8, glibc's own value, so the library leaves malloc alone)
            --python PATH   interpreter for the baseline           default /usr/bin/python3
            --script PATH   the baseline script                    default <bin>/pytorch/train_step.py
            --json PATH     result file ("" = none)                default train-step-result.json
        """;

    /// <summary>Parses the options after the command name; throws <see cref="ArgumentException"/> naming the bad flag.</summary>
    public static TrainStepOptions Parse(IReadOnlyList<string> args)
    {
        var options = new TrainStepOptions();
        for (int i = 0; i < args.Count; i++)
        {
            string flag = args[i];
            string Value() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{flag} needs a value");
            int Int() => int.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v)
                ? v : throw new ArgumentException($"{flag} needs an integer, got '{args[i]}'");
            double Double() => double.TryParse(Value(), NumberStyles.Float, CultureInfo.InvariantCulture, out double v)
                ? v : throw new ArgumentException($"{flag} needs a number, got '{args[i]}'");
            options = flag switch
            {
                "--steps" => options with { Steps = Int() },
                "--warmup" => options with { Warmup = Int() },
                "--threads" => options with { Threads = Int() },
                "--batch" => options with { Batch = Int() },
                "--seq" => options with { Seq = Int() },
                "--rounds" => options with { Rounds = Int() },
                "--seed" => options with { Seed = Int() },
                "--loss-chunk" => options with { LossChunk = Int() },
                "--lora-dropout" => options with { LoraDropout = Double() },
                "--skip-pytorch" => options with { SkipPyTorch = true },
                "--allocator-baseline" => options with { AllocatorBaseline = true },
                "--precisions" => options with { Precisions = Precision(Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)) },
                "--base-dtype" => options with { Precisions = Precision(new[] { Value() }) },
                "--activation-checkpointing" => options with { ActivationCheckpointing = new[] { true } },
                "--compare-activation-checkpointing" => options with { ActivationCheckpointing = new[] { false, true } },
                "--checkpoint" => options with { Checkpoint = Value() },
                "--python" => options with { Python = Value() },
                "--script" => options with { Script = Value() },
                "--json" => options with { Json = Value() },
                _ => throw new ArgumentException($"unknown option '{flag}'"),
            };
        }
        options.Validate();
        return options;
    }

    static IReadOnlyList<string> Precision(IReadOnlyList<string> names)
    {
        foreach (var name in names) Quantization.BasePrecisionNames.Parse(name, "--precisions / --base-dtype");
        return names.Count > 0 ? names : throw new ArgumentException("--precisions needs at least one of fp32, bf16, int8, nf4");
    }

    /// <summary>The flags that reproduce these options in a child process measuring one precision.</summary>
    public IEnumerable<string> ChildArguments(string precision, bool activationCheckpointing)
    {
        var flags = new List<string>
        {
            "--steps", Steps.ToString(CultureInfo.InvariantCulture), "--warmup", Warmup.ToString(CultureInfo.InvariantCulture),
            "--threads", Threads.ToString(CultureInfo.InvariantCulture), "--batch", Batch.ToString(CultureInfo.InvariantCulture),
            "--seq", Seq.ToString(CultureInfo.InvariantCulture), "--seed", Seed.ToString(CultureInfo.InvariantCulture),
            "--loss-chunk", LossChunk.ToString(CultureInfo.InvariantCulture), "--lora-dropout", LoraDropout.ToString("R", CultureInfo.InvariantCulture),
            "--checkpoint", Checkpoint, "--base-dtype", precision,
        };
        if (activationCheckpointing) flags.Add("--activation-checkpointing");
        return flags;
    }

    public void Validate()
    {
        static void Positive(int value, string flag)
        {
            if (value <= 0) throw new ArgumentException($"{flag} must be positive, got {value}");
        }
        Positive(Steps, "--steps");
        Positive(Threads, "--threads");
        Positive(Batch, "--batch");
        if (LossChunk < 0) throw new ArgumentException($"--loss-chunk must be ≥ 0 (0 = automatic), got {LossChunk}");
        Positive(Rounds, "--rounds");
        if (LoraDropout is < 0 or >= 1) throw new ArgumentException($"--lora-dropout must be in [0, 1), got {LoraDropout}");
        if (Warmup < 0) throw new ArgumentException($"--warmup must be ≥ 0, got {Warmup}");
        if (Seq < 2) throw new ArgumentException($"--seq must be ≥ 2 (the loss predicts token t+1), got {Seq}");
    }
}
