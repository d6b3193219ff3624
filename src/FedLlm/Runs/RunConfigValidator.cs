using System.Collections;
using FedLlm.Configuration;
using FedLlm.Evaluation;
using FedLlm.Federation;
using FedLlm.Federation.Strategies;

namespace FedLlm.Runs;

/// <summary>
/// Checks a <see cref="RunConfig"/> key by key before any work: each value's range (<see cref="CheckAttribute"/>) and
/// name set (<see cref="OneOfAttribute"/>), then the rules between keys (clients per round ≤ clients, min ≤ max learning
/// rate, known algorithms…). Each problem names where the value came from, as the caller describes it: the flag, the
/// YAML file and line, or the default.
/// </summary>
public static class RunConfigValidator
{
    /// <summary>Every problem, one line each; empty when the configuration is fine.</summary>
    /// <param name="describe">Where a key's value came from, e.g. "--rounds" or "run.yaml line 7 (federation.rounds)";
    /// null = the dotted path.</param>
    /// <param name="algorithms">The registry algorithm names are looked up in; null = <see cref="FederatedRun.DefaultAlgorithms"/>.</param>
    /// <param name="config">The settings to check.</param>
    public static IReadOnlyList<string> Problems(RunConfig config, Func<string, string>? describe = null, AlgorithmRegistry? algorithms = null)
    {
        describe ??= path => path;
        algorithms ??= FederatedRun.DefaultAlgorithms;
        var problems = new List<string>();
        void Add(string path, string problem) => problems.Add($"{describe(path)}: {problem}");

        foreach (var key in RunConfigSchema.Keys)
        {
            object? value = key.Get(config);
            if (value is null) continue;
            if (key.IsMap)
            {
                foreach (DictionaryEntry entry in (IDictionary)value)
                    if (ValueRules.Check(entry.Value, key.Rule) is { } p) Add(key.Path, $"{entry.Key}: {p}");
            }
            else if (key.IsList)
            {
                if (key.OneOf is { } oneOf)
                    foreach (var item in ((IEnumerable)value).Cast<object?>())
                        if (ValueRules.CheckName(item?.ToString() ?? "", oneOf) is { } p) Add(key.Path, p);
            }
            else if (value is string text)
            {
                if (key.OneOf is { } oneOf && ValueRules.CheckName(text, oneOf) is { } p) Add(key.Path, p);
            }
            else if (ValueRules.Check(value, key.Rule) is { } p)
            {
                Add(key.Path, p);
            }
        }
        if (problems.Count > 0) return problems; // the rules below read values that already failed

        var task = config.Task.ToLowerInvariant();
        var defaults = RunConfig.TaskDefaults.For(task);
        var f = config.Federation;
        int clients = f.Clients ?? defaults.Clients;
        if (f.ClientsPerRound > clients)
            Add("federation.clients_per_round",
                $"{f.ClientsPerRound} clients per round but only {clients} clients ({describe("federation.clients")}); lower it or raise the clients");
        double learningRate = f.LearningRate ?? defaults.LearningRate, minimum = f.MinLearningRate ?? defaults.MinLearningRate;
        if (minimum > learningRate)
            Add("federation.min_learning_rate",
                $"{ValueRules.Format(minimum)} is above the learning rate {ValueRules.Format(learningRate)} ({describe("federation.learning_rate")})");

        var known = algorithms.Names.Append("all").Append(FedLlm.Federation.Async.BufferedAsyncServer.AlgorithmName).ToList();
        if (config.Strategy.Algorithms.Count == 0) Add("strategy.algorithms", "no algorithm to run");
        foreach (var name in config.Strategy.Algorithms)
            if (!known.Contains(name, StringComparer.OrdinalIgnoreCase))
                Add("strategy.algorithms", $"'{name}' is not one of {string.Join(", ", known)}{DidYouMean.Hint(name, known)}");
        foreach (var name in config.Strategy.ServerLearningRates.Keys)
            if (!algorithms.Contains(name))
                Add("strategy.server_learning_rates", $"'{name}' is not an algorithm ({string.Join(", ", algorithms.Names)}){DidYouMean.Hint(name, algorithms.Names)}");

        if (config.Evaluation.Task is { } evalTask)
        {
            if (!EvaluationTaskRegistry.Names.Contains(evalTask, StringComparer.OrdinalIgnoreCase))
                Add("evaluation.task", $"'{evalTask}' is not one of {string.Join(", ", EvaluationTaskRegistry.Names)}{DidYouMean.Hint(evalTask, EvaluationTaskRegistry.Names)}");
            if (config.Evaluation.Data is null) Add("evaluation.data", $"evaluation task '{evalTask}' needs its data file or folder");
        }
        if (config.Dpo.ReferenceAdapter is not null && task != "dpo")
            Add("dpo.reference_adapter", "a reference adapter is only used with the dpo task (task: dpo / --task dpo)");
        return problems;
    }

    /// <summary>Throws one <see cref="ConfigurationException"/> listing every problem.</summary>
    public static void Validate(RunConfig config, Func<string, string>? describe = null, AlgorithmRegistry? algorithms = null) =>
        ConfigurationException.ThrowIfAny(Problems(config, describe, algorithms));
}
