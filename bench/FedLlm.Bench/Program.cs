using FedLlm.Bench;

// FedLlm.Bench: speed and memory of FedLlm's training step against the same step in plain PyTorch.
// Measure in Release: dotnet run -c Release --project bench/FedLlm.Bench -- train-step
var arguments = args.ToList();
string command = arguments.Count > 0 && !arguments[0].StartsWith('-') ? arguments[0] : "train-step";
if (arguments.Count > 0 && arguments[0] == command) arguments.RemoveAt(0);
if (arguments.Contains("--help") || arguments.Contains("-h"))
{
    Console.WriteLine(TrainStepOptions.Usage);
    return 0;
}
if (command == "load") return LoadBenchmark.Run(arguments);
if (command == "codec") return CodecBenchmark.Run(arguments);
if (command == "transfer") return TransferBenchmark.Run(arguments);
if (command == "transfer-one") return TransferBenchmark.RunOne(arguments);
if (command != "train-step")
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

// Each round: FedLlm in this process, then PyTorch in a child, whose peak RSS is its own (ru_maxrss of the child).
var rounds = new List<TrainStepRound>();
for (int round = 1; round <= options.Rounds; round++)
{
    if (options.Rounds > 1) Console.Error.WriteLine($"round {round} of {options.Rounds}");
    var fedLlm = FedLlmTrainStep.Run(options, Console.Error);
    GC.Collect();
    GC.WaitForPendingFinalizers();
    ProcessMemory.ReleaseFreeHeap();
    var pyTorch = options.SkipPyTorch ? null : PyTorchBaseline.Run(options, Console.Error);
    rounds.Add(new TrainStepRound(fedLlm, pyTorch));
}

var report = new TrainStepReport
{
    Options = options,
    Environment = TrainStepReport.DescribeEnvironment(),
    Rounds = rounds,
};
report.WriteTable();
if (options.Json.Length > 0)
{
    report.WriteJson(options.Json);
    Console.WriteLine($"wrote {Path.GetFullPath(options.Json)}");
}
return 0;
