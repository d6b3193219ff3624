// Federated instruction tuning from C#: FedAvg over 4 clients on the embedded default (a small Llama and a
// financial-sentiment instruction set, built on first use), scored on its held-out headlines before and after.
using FedLlm.Federation;
using FedLlm.Runs;

string output = args.Length > 0 ? args[0] : Path.Combine(Path.GetTempPath(), "fedllm-embedding");
var defaults = RunConfig.EmbeddedDefault("sft").ToRunOptions(output);
var options = defaults with
{
    Algorithms = ["fedavg"],
    Baselines = [],
    Federation = defaults.Federation with { Rounds = 4, TotalClients = 4, ClientsPerRound = 2, EvaluateEvery = 2 },
    Data = defaults.Data with { EvalLimit = 60 },
};

using var run = FederatedRun.Prepare(options, log: Console.WriteLine);
var before = run.Data.Evaluate!();
Console.WriteLine($"before: held-out loss {before.Loss:F3}, exact match {before.Score:P1}");

var outcome = await run.RunAsync("fedavg", progress: new RoundPrinter());
var after = outcome.Final!;
Console.WriteLine($"after {outcome.Rounds.Count} rounds: held-out loss {after.Loss:F3}, exact match {after.Score:P1}; adapter in {output}/fedavg/adapter");
return after.Loss < before.Loss ? 0 : 1;

sealed class RoundPrinter : IProgress<RoundRecord>
{
    public void Report(RoundRecord r) =>
        Console.WriteLine($"round {r.Round + 1}: clients {string.Join(",", r.Clients)}, train loss {r.ClientLoss.Values.Average():F3}");
}
