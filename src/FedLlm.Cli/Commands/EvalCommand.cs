using FedLlm.Configuration;
using System.ComponentModel;
using System.Diagnostics;
using FedLlm.Defaults;
using FedLlm.Evaluation;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Runtime;
using FedLlm.Tokenization;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace FedLlm.Cli.Commands;

public sealed class EvalSettings : CommonSettings
{
    /// <summary>The task names of EvaluationTaskRegistry (a test keeps them equal).</summary>
    public const string TaskNames = "mmlu,bbh-mc,mc,gsm8k,bbh,generate,fpb,fiqa,tfns,nwgi,sentiment,overlap,bleu,rouge,humaneval,mbpp,mt_bench,vicuna_bench";

    [CommandOption("--adapter <DIR>")]
    [Description("A PEFT adapter folder (adapter_config.json + adapter_model.safetensors) applied to the model.")]
    public string? Adapter { get; init; }

    [CommandOption("--task <NAME>")]
    [OneOf(EvalSettings.TaskNames)]
    [Description("mmlu, bbh-mc, mc, gsm8k, bbh, generate, fpb, fiqa, tfns, nwgi, sentiment, overlap (bleu, rouge), humaneval, mbpp, mt_bench, vicuna_bench. Default with no --model/--data: sentiment on the embedded held-out set.")]
    public string? Task { get; init; }

    [CommandOption("--data <PATH>")]
    [Description("The benchmark's file or folder in its published layout.")]
    public string? Data { get; init; }

    [CommandOption("--limit <N>")][Check(ValueRule.NonNegative)][Description("Evaluate only the first N items (0 = all).")][DefaultValue(0)] public int Limit { get; init; }
    [CommandOption("--few-shot <K>")][Check(ValueRule.NonNegative)][Description("Solved examples before each question.")][DefaultValue(0)] public int FewShot { get; init; }
    [CommandOption("--batch-size <B>")][Check(ValueRule.Positive)][Description("Items per forward pass.")][DefaultValue(8)] public int BatchSize { get; init; } = 8;
    [CommandOption("--max-new-tokens <N>")][Check(ValueRule.Positive)][Description("Generation budget. Default: the task's own.")] public int? MaxNewTokens { get; init; }
    [CommandOption("--max-length <N>")][Check(ValueRule.Positive)][Description("Longest token sequence fed to the model. Default: max_position_embeddings.")] public int? MaxLength { get; init; }

    [CommandOption("--param <KEY=VALUE>")]
    [Description("A task setting (repeatable), e.g. --param extract='answer: (\\d+)' or --param split=all.")]
    public string[] Parameters { get; init; } = [];

    [CommandOption("--unsafe-code-execution")]
    [Description("humaneval, mbpp: run the generated programs WITHOUT the bubblewrap sandbox, when bwrap cannot be installed. They can then read your files and environment, reach the network and start processes. Only on a disposable machine.")]
    public bool UnsafeCodeExecution { get; init; }

    [CommandOption("--output <FILE>")][Description("Write the results (metrics, groups, samples, settings) as JSON.")] public string? Output { get; init; }

    public override ValidationResult Validate()
    {
        if (Limit < 0) return ValidationResult.Error("--limit must be ≥ 0");
        if (FewShot < 0) return ValidationResult.Error("--few-shot must be ≥ 0");
        if (BatchSize <= 0) return ValidationResult.Error("--batch-size must be positive");
        if (MaxNewTokens is <= 0) return ValidationResult.Error("--max-new-tokens must be positive");
        if (Parameters.FirstOrDefault(p => !p.Contains('=')) is { } bad) return ValidationResult.Error($"--param {bad}: expected KEY=VALUE");
        return ValidationResult.Success();
    }
}

/// <summary><c>fedllm eval</c>: scores a base model plus an optional adapter on one benchmark from local files.</summary>
public sealed class EvalCommand : Command<EvalSettings>
{
    public override int Execute(CommandContext context, EvalSettings s, CancellationToken cancellationToken)
    {
        s.ApplyRuntime();
        var device = TorchRuntime.ParseDevice(s.Device);
        var parameters = s.Parameters.Select(p => p.Split('=', 2)).ToDictionary(p => p[0].Trim(), p => p[1]);
        string modelDir, taskName, dataPath;
        if (s.Model is null && s.Data is null)
        {
            // The embedded default, scored on its held-out headlines in the template it is trained with.
            var files = EmbeddedDefault.Ensure(m => AnsiConsole.MarkupLineInterpolated($"[grey]{m}[/]"));
            (modelDir, taskName, dataPath) = (files.ModelDirectory, s.Task ?? "sentiment", files.EvalPath);
            parameters.TryAdd("prompt", "alpaca");
        }
        else
        {
            modelDir = s.Model ?? EmbeddedDefault.Ensure(m => AnsiConsole.MarkupLineInterpolated($"[grey]{m}[/]")).ModelDirectory;
            taskName = s.Task ?? throw new ArgumentException($"--task is required with --model or --data; known tasks: {string.Join(", ", EvaluationTaskRegistry.Names)}");
            dataPath = s.Data ?? throw new ArgumentException($"--data is required with --model (the {taskName} benchmark's file or folder)");
        }

        var entry = EvaluationTaskRegistry.Find(taskName);
        var spec = new EvaluationTaskSpec(entry.Name, dataPath, parameters);
        var tokenizer = TokenizerLoader.Load(modelDir);
        // Judged benchmarks format their conversations with the model's own chat template when it has one.
        var task = EvaluationTaskRegistry.Create(spec, tokenizer);
        using var taskOwner = task as IDisposable;
        var options = new EvaluationRunOptions
        {
            Limit = s.Limit, FewShot = s.FewShot, BatchSize = s.BatchSize, Seed = s.Seed,
            MaxNewTokens = s.MaxNewTokens ?? entry.DefaultMaxNewTokens ?? new EvaluationRunOptions().MaxNewTokens,
            UnsafeCodeExecution = s.UnsafeCodeExecution,
        };
        if (s.UnsafeCodeExecution)
            AnsiConsole.MarkupLine("[red]warning:[/] --unsafe-code-execution: generated code runs directly on this machine, outside any OS " +
                                   "sandbox, with only in-process checks; it can read files and the environment, use the network and start processes.");

        using var model = s.LoadModel(modelDir, device);
        if (s.Adapter is not null) AdapterIO.Load(s.Adapter, model);
        var evaluationModel = new CausalLmEvaluationModel(model, tokenizer, s.BatchSize, s.MaxLength);
        AnsiConsole.MarkupLineInterpolated($"task [cyan]{task.Name}[/] on [cyan]{dataPath}[/]; model [cyan]{modelDir}[/]{(s.Adapter is null ? "" : $" + adapter {s.Adapter}")}; {s.FewShot}-shot, batch {s.BatchSize}, {TorchSharp.torch.get_num_threads()} threads on {device}");

        var clock = Stopwatch.StartNew();
        EvaluationReport report = null!;
        ProgressDisplay.Create()
            .Start(ctx =>
            {
                var bar = ctx.AddTask(task.Name, maxValue: 1);
                report = task.Evaluate(evaluationModel, options, new SynchronousProgress<EvaluationProgress>(p =>
                {
                    bar.MaxValue = Math.Max(1, p.Total);
                    bar.Value = p.Done;
                    double rate = p.Done / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
                    bar.Description = $"{task.Name} {p.Done}/{p.Total} items, {rate:F2} items/s";
                }), cancellationToken);
                bar.Value = bar.MaxValue;
            });
        double seconds = clock.Elapsed.TotalSeconds;

        Render(report, seconds);
        if (s.Output is not null)
        {
            var settings = new Dictionary<string, string?>
            {
                ["model"] = modelDir, ["adapter"] = s.Adapter, ["task"] = task.Name, ["data"] = dataPath, ["limit"] = s.Limit.ToString(),
                ["few_shot"] = s.FewShot.ToString(), ["batch_size"] = s.BatchSize.ToString(), ["max_new_tokens"] = options.MaxNewTokens.ToString(),
                ["seed"] = s.Seed.ToString(), ["device"] = s.Device,
                ["unsafe_code_execution"] = s.UnsafeCodeExecution ? "true" : null,
            };
            foreach (var (key, value) in parameters) settings["param." + key] = value;
            EvaluationReportJson.Write(s.Output, report, settings, seconds);
            AnsiConsole.MarkupLineInterpolated($"results written to [cyan]{s.Output}[/]");
        }
        return 0;
    }

    /// <summary>Most groups a table shows; MMLU's 57 subjects go to the JSON only.</summary>
    const int MaxGroupRows = 30;

    static void Render(EvaluationReport report, double seconds)
    {
        var table = new Table().AddColumns("metric", "value");
        foreach (var (name, value) in report.Metrics) table.AddRow(Markup.Escape(name), Format(name, value));
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLineInterpolated($"{report.Task}: {report.Items} items in {seconds:F1} s ({report.Items / Math.Max(seconds, 1e-9):F2} items/s)");
        if (report.Groups.Count is > 0 and <= MaxGroupRows)
        {
            var columns = report.Groups.Values.SelectMany(g => g.Keys).Distinct().ToList();
            var groups = new Table().AddColumn("group");
            foreach (var c in columns) groups.AddColumn(c);
            foreach (var (name, metrics) in report.Groups)
                groups.AddRow([Markup.Escape(name), .. columns.Select(c => metrics.TryGetValue(c, out var v) ? Format(c, v) : "")]);
            AnsiConsole.Write(groups);
        }
        else if (report.Groups.Count > MaxGroupRows)
            AnsiConsole.MarkupLineInterpolated($"[grey]{report.Groups.Count} groups: see --output for each[/]");
    }

    static string Format(string name, double value) =>
        name is "items" ? $"{value:F0}" : name.StartsWith("bleu", StringComparison.Ordinal) ? $"{value:F2}" : $"{value:F4}";
}
