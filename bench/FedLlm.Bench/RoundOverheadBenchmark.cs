using System.Diagnostics;
using System.Globalization;
using FedLlm.Data;
using FedLlm.Federation;
using FedLlm.Federation.Strategies;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Quantization;
using FedLlm.Runs;
using FedLlm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>
/// Federation overhead of <c>simulate</c>: how much of a round goes to anything but the clients' training steps and the
/// held-out evaluation. Runs the production round loop (<see cref="SimulationRunner.RunFederatedAsync(IFederatedStrategy,
/// IReadOnlyList{IClientDataset}, string, bool, IProgress{RoundRecord}?, CancellationToken)"/>: in-process clients, FedAvg,
/// RunStore commits, rounds/round-N adapters) on the SmolLM-135M shape with LoRA r 16 on all seven projections, and
/// splits each round's wall time with decorators that change nothing: a client hook that times the span from the first
/// to the last local step, a client-executor wrapper, a strategy wrapper around aggregation and a timed evaluator.
/// </summary>
public static class RoundOverheadBenchmark
{
    public const string Usage =
        "round-overhead [--clients 2] [--local-steps 2] [--rounds 3] [--batch 4] [--seq 512] [--threads 2] [--lora-dropout 0.05]\n" +
        "               [--checkpoint DIR] [--output DIR] [--seed 2023]";

    public static int Run(IReadOnlyList<string> arguments)
    {
        int clients = 2, localSteps = 2, rounds = 3, batch = 4, seq = 512, threads = 2;
        double dropout = 0.05;
        long seed = 2023;
        string checkpoint = new TrainStepOptions().Checkpoint;
        string output = Path.Combine(Path.GetTempPath(), $"fedllm-round-overhead-{Environment.ProcessId}");
        for (int i = 0; i < arguments.Count; i++)
        {
            string Value() => i + 1 < arguments.Count ? arguments[++i] : throw new ArgumentException($"{arguments[i]} needs a value");
            int Int() => int.Parse(Value(), CultureInfo.InvariantCulture);
            switch (arguments[i])
            {
                case "--clients": clients = Int(); break;
                case "--local-steps": localSteps = Int(); break;
                case "--rounds": rounds = Int(); break;
                case "--batch": batch = Int(); break;
                case "--seq": seq = Int(); break;
                case "--threads": threads = Int(); break;
                case "--lora-dropout": dropout = double.Parse(Value(), CultureInfo.InvariantCulture); break;
                case "--seed": seed = long.Parse(Value(), CultureInfo.InvariantCulture); break;
                case "--checkpoint": checkpoint = Value(); break;
                case "--output": output = Value(); break;
                default:
                    Console.Error.WriteLine($"unknown option '{arguments[i]}'\n{Usage}");
                    return 2;
            }
        }

        torch.set_num_threads(threads);
        torch.manual_seed(seed);
        BenchModels.EnsureCheckpoint(checkpoint, FedLlmTrainStep.SmolLm135M, ScalarType.Float32, seed, Console.Error);
        using var model = ModelLoader.Load(checkpoint, BaseWeights.Parse("fp32"));
        var lora = FedLlmTrainStep.Lora with { Dropout = dropout };
        LoraInjector.Inject(model, lora, new Generator((ulong)seed));

        var options = new FederationOptions
        {
            Rounds = rounds, TotalClients = clients, ClientsPerRound = clients, LocalSteps = localSteps, BatchSize = batch,
            MaxSequenceLength = seq, Seed = seed, EvaluateEvery = 1,
        };
        var shards = RandomShards(clients, batch * localSteps, seq, FedLlmTrainStep.SmolLm135M.VocabSize, seed);
        var timings = new PhaseTimings();
        var heldOut = shards[0];
        Func<EvaluationResult> evaluate = () =>
        {
            // One held-out batch: the bench times evaluation only to subtract it, so its size does not matter.
            var watch = Stopwatch.StartNew();
            var metrics = heldOut.Evaluate(model, batch);
            timings.Evaluation += watch.Elapsed.TotalSeconds;
            return new EvaluationResult(metrics?.GetValueOrDefault("eval_loss") ?? 0, 0);
        };
        var registry = StrategyFactory.BuiltIn.With(new TrainingSpan(timings));
        var runner = new SimulationRunner(model, options, lora, evaluate, baseModel: null, padTokenId: 0, algorithms: registry)
        {
            ClientDecorator = inner => new TimedClients(inner, timings),
        };
        if (Directory.Exists(output)) Directory.Delete(output, recursive: true);

        Console.Error.WriteLine($"round-overhead: {clients} clients × {localSteps} local steps of batch {batch} × {seq}, {rounds} rounds, {threads} threads, LoRA dropout {dropout}");
        var rows = new List<PhaseTimings>();
        var clock = Stopwatch.StartNew();
        double roundStart = 0;
        var progress = new Progress(record =>
        {
            double now = clock.Elapsed.TotalSeconds;
            var row = timings.Take(now - roundStart, record.Seconds);
            roundStart = clock.Elapsed.TotalSeconds;
            rows.Add(row);
            Console.Error.WriteLine($"round {record.Number}: {row.Wall:F2} s, overhead {row.Overhead:F3} s ({100 * row.OverheadFraction:F2} %)");
        });
        runner.RunFederatedAsync(new TimedStrategy(new FedAvg(), timings), shards, output, resume: false, progress).GetAwaiter().GetResult();
        Directory.Delete(output, recursive: true);

        Console.WriteLine("| round | wall s | training steps s | evaluation s | client overhead s | aggregation s | commit + round adapter s | other server s | overhead s | overhead % |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (int r = 0; r < rows.Count; r++)
        {
            var x = rows[r];
            Console.WriteLine($"| {r + 1} | {x.Wall:F2} | {x.Training:F2} | {x.Evaluation:F2} | {x.ClientOverhead:F3} | {x.Aggregation:F3} | {x.CommitAndSave:F3} | {x.OtherServer:F3} | {x.Overhead:F3} | {100 * x.OverheadFraction:F2} |");
        }
        var steady = rows.Skip(1).DefaultIfEmpty(rows[0]).OrderBy(x => x.OverheadFraction).ToList();
        var median = steady[steady.Count / 2];
        Console.WriteLine($"median over rounds 2 … {rows.Count}: overhead {median.Overhead:F3} s of {median.Wall:F2} s = {100 * median.OverheadFraction:F2} % (target ≤ 3 %); load average {File.ReadAllText("/proc/loadavg").Trim()}");
        return 0;
    }

    static List<IClientDataset> RandomShards(int clients, int examplesPerClient, int seq, int vocab, long seed)
    {
        var random = new Random((int)seed);
        return Enumerable.Range(0, clients).Select(_ => (IClientDataset)new SftClientDataset(
            Enumerable.Range(0, examplesPerClient).Select(_ =>
            {
                var ids = Enumerable.Range(0, seq).Select(_ => random.Next(1, vocab)).ToArray();
                return new SftExample(ids, (int[])ids.Clone(), promptLength: 0, truncated: false, boundaryAligned: true);
            }).ToList(), padTokenId: 0)).ToList();
    }

    /// <summary>Seconds of one round by phase; the running sums are taken and reset once per round.</summary>
    sealed class PhaseTimings
    {
        public double Training, Evaluation, ClientsTotal, Aggregation;
        public double Wall, CommitAndSave;

        public double ClientOverhead => ClientsTotal - Training;

        /// <summary>Everything outside the training steps and the evaluation.</summary>
        public double Overhead => Wall - Training - Evaluation;

        public double OverheadFraction => Overhead / Wall;

        public double OtherServer => Overhead - ClientOverhead - Aggregation - CommitAndSave;

        /// <param name="wall">From the previous round's report to this one's.</param>
        /// <param name="untilCommit">The record's own seconds: the round up to its commit.</param>
        public PhaseTimings Take(double wall, double untilCommit)
        {
            var row = new PhaseTimings
            {
                Training = Training, Evaluation = Evaluation, ClientsTotal = ClientsTotal, Aggregation = Aggregation,
                Wall = wall, CommitAndSave = wall - untilCommit,
            };
            Training = Evaluation = ClientsTotal = Aggregation = 0;
            return row;
        }
    }

    /// <summary>A client hook that adds nothing to the update: it times from just before the first local step to just after
    /// the adapter's snapshot that follows the last.</summary>
    sealed class TrainingSpan(PhaseTimings timings) : IClientHooks
    {
        public const string HookName = "bench-training-span";
        long started;

        public string Name => HookName;

        public void BeforeTraining(ClientRoundContext context) => started = Stopwatch.GetTimestamp();

        public void AfterTraining(ClientRoundContext context) => timings.Training += Stopwatch.GetElapsedTime(started).TotalSeconds;
    }

    sealed class TimedStrategy(IFederatedStrategy inner, PhaseTimings timings) : DelegatingStrategy(inner)
    {
        public override ClientInstructions ConfigureTrain(int round, double learningRate)
        {
            var instructions = base.ConfigureTrain(round, learningRate);
            return instructions with { Hooks = [.. instructions.Hooks, TrainingSpan.HookName] };
        }

        public override IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
        {
            var watch = Stopwatch.StartNew();
            var result = base.Aggregate(round, global, updates);
            timings.Aggregation += watch.Elapsed.TotalSeconds;
            return result;
        }
    }

    sealed class TimedClients(IClientExecutor inner, PhaseTimings timings) : IClientExecutor
    {
        public async Task<IReadOnlyList<ClientUpdate>> TrainRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
            ClientInstructions instructions, CancellationToken cancellationToken = default)
        {
            var watch = Stopwatch.StartNew();
            var updates = await inner.TrainRoundAsync(round, clients, global, instructions, cancellationToken);
            timings.ClientsTotal += watch.Elapsed.TotalSeconds;
            return updates;
        }

        public Task<IReadOnlyList<ClientEvaluation>> EvaluateRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
            ClientInstructions instructions, CancellationToken cancellationToken = default) =>
            inner.EvaluateRoundAsync(round, clients, global, instructions, cancellationToken);

        public IReadOnlyDictionary<string, Tensor> SnapshotState() => inner.SnapshotState();

        public void RestoreState(IReadOnlyDictionary<string, Tensor> state) => inner.RestoreState(state);

        public (long Sent, long Received)? MeasuredTraffic(int round) => inner.MeasuredTraffic(round);
    }

    sealed class Progress(Action<RoundRecord> report) : IProgress<RoundRecord>
    {
        public void Report(RoundRecord value) => report(value);
    }
}
