using System.Text.Json;
using FedLlm.Bench;

// FedLlm.Bench: speed and memory of FedLlm's training step against the same step in plain PyTorch.
// Measure in Release: dotnet run -c Release --project bench/FedLlm.Bench -- train-step [--precisions fp32,bf16,int8,nf4]
var arguments = args.ToList();
string command = arguments.Count > 0 && !arguments[0].StartsWith('-') ? arguments[0] : "train-step";
if (arguments.Count > 0 && arguments[0] == command) arguments.RemoveAt(0);
if (arguments.Contains("--help") || arguments.Contains("-h"))
{
    Console.WriteLine(string.Join("\n", TrainStepOptions.Usage, MemoryBenchmark.Usage, MemoryAccounting.Usage, LoadBenchmark.Usage, ServeBenchmark.Usage, RoundOverheadBenchmark.Usage, DropoutBenchmark.Usage, DecodeBenchmark.Usage, GemvProbe.Usage));
    return 0;
}
if (command == "decode") return DecodeBenchmark.Run(arguments);
if (command == "gemv") return GemvProbe.Run(arguments);
if (command == "decode-fedllm") return DecodeBenchmark.RunFedLlm(arguments);
if (command == "decode-llamacpp") return DecodeBenchmark.RunLlamaCpp(arguments);
if (command == "dropout") return DropoutBenchmark.Run(arguments);
if (command == "round-overhead") return RoundOverheadBenchmark.Run(arguments);
if (command == "load") return LoadBenchmark.Run(arguments);
if (command == "serve") return ServeBenchmark.Run(arguments);
if (command == "codec") return CodecBenchmark.Run(arguments);
if (command == "transfer") return TransferBenchmark.Run(arguments);
if (command == "transfer-one") return TransferBenchmark.RunOne(arguments);
if (command == "memory") return MemoryBenchmark.Run(arguments);
if (command == "memory-one") return MemoryBenchmark.RunOne(arguments);
if (command == "memory-accounting") return MemoryAccounting.Run(arguments);
if (command is not ("train-step" or "train-step-one"))
{
    Console.Error.WriteLine($"unknown command '{command}'\n{TrainStepOptions.Usage}");
    return 2;
}

TrainStepOptions options;
try
{
    options = TrainStepOptions.Parse(arguments);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"{e.Message}\n{TrainStepOptions.Usage}");
    return 2;
}

if (command == "train-step-one")
{
    // A child of the sweep below: one precision, one process, the measurement as one JSON line on stdout.
    // On a thread-pool thread, as the CLI runs training (async Main continues there): glibc treats the process's first thread differently.
    var one = Task.Run(() => FedLlmTrainStep.Run(options, options.Precisions[0], options.ActivationCheckpointing[0], Console.Error)).GetAwaiter().GetResult();
    Console.WriteLine(JsonSerializer.Serialize(one));
    return 0;
}

BenchModels.EnsureCheckpoint(options.Checkpoint, FedLlmTrainStep.SmolLm135M, TorchSharp.torch.ScalarType.Float32, options.Seed, Console.Error);
// Each round: every FedLlm precision in a child process of its own, then PyTorch (fp32 and bf16 if asked for).
var rounds = new List<IReadOnlyList<StepMeasurement>>();
for (int round = 1; round <= options.Rounds; round++)
{
    if (options.Rounds > 1) Console.Error.WriteLine($"round {round} of {options.Rounds}");
    var measured = new List<StepMeasurement>();
    foreach (var precision in options.Precisions)
        foreach (bool checkpointing in options.ActivationCheckpointing)
        {
            measured.Add(ChildProcess.Run<StepMeasurement>(new[] { "train-step-one" }.Concat(options.ChildArguments(precision, checkpointing)), Console.Error));
            if (options.AllocatorBaseline) // glibc's own value of a MALLOC_* variable: the library then leaves malloc as glibc set it
                measured.Add(ChildProcess.Run<StepMeasurement>(new[] { "train-step-one" }.Concat(options.ChildArguments(precision, checkpointing)), Console.Error,
                    new Dictionary<string, string> { ["MALLOC_ARENA_TEST"] = "8" }));
        }
    if (!options.SkipPyTorch)
        foreach (var precision in options.Precisions.Where(p => p is "fp32" or "bf16"))
            measured.Add(PyTorchBaseline.Run(options, precision, Console.Error));
    rounds.Add(measured);
}

var report = new SweepReport { Options = options, Environment = TrainStepReport.DescribeEnvironment(), Rounds = rounds };
report.WriteTable();
if (options.Json.Length > 0)
{
    report.WriteJson(options.Json);
    Console.WriteLine($"wrote {Path.GetFullPath(options.Json)}");
}
return 0;
