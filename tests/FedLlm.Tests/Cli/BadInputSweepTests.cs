using System.Text;
using FedLlm.Cli;

namespace FedLlm.Tests.Cli;

/// <summary>
/// Bad input of every kind through the real command app, in process: unknown options and commands, unparseable and
/// out-of-range values of every numeric class, wrong names, bad run.yaml files (empty, wrong types, unknown keys,
/// syntax), missing files and folders, and resume without anything to resume. Each must exit non-zero with a message
/// that names the flag, key or file, and no .NET or libtorch internals. The table of messages is docs/cli-errors.md.
/// </summary>
public sealed class BadInputSweepTests : IDisposable
{
    static readonly string[] Forbidden =
    [
        "Parameter '", "Nullable`1", "System.", "Version=", "PublicKeyToken", "Actual value was", "   at ", "frame #",
        "Exception raised from", "c10::", "Exception:", "CoreLib", "`1",
    ];

    readonly string dir = Directory.CreateTempSubdirectory("fedllm-cli-sweep-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    string File(string name, string text)
    {
        string path = Path.Combine(dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        System.IO.File.WriteAllText(path, text);
        return path;
    }

    /// <summary>(case, arguments, a fragment the message must contain).</summary>
    List<(string Case, string[] Args, string Names)> Cases()
    {
        string T(string name) => Path.Combine(dir, name);
        string data = File("data.json", "[{\"instruction\": \"a\", \"input\": \"\", \"output\": \"b\"}]");
        string model = T("no-such-model");
        File("empty.yaml", "");
        File("comments.yaml", "# nothing set here\n");
        File("only-section.yaml", "federation:\n");
        File("list.yaml", "- rounds\n- 3\n");
        File("rounds-abc.yaml", "federation:\n  rounds: abc\n");
        File("rounds-float.yaml", "federation:\n  rounds: 1.5\n");
        File("roundz.yaml", "federation:\n  roundz: 3\n");
        File("top-typo.yaml", "federatoin:\n  rounds: 3\n");
        File("section-scalar.yaml", "federation: 5\n");
        File("rounds-list.yaml", "federation:\n  rounds: [1, 2]\n");
        File("algorithms-map.yaml", "strategy:\n  algorithms: {fedavg: 1}\n");
        File("server-rate-text.yaml", "strategy:\n  server_learning_rates:\n    fedadam: fast\n");
        File("server-rate-alg.yaml", "strategy:\n  server_learning_rates:\n    fedadamm: 0.01\n");
        File("cpr.yaml", "federation:\n  clients: 4\n  clients_per_round: 9\n");
        File("alpha-negative.yaml", "data:\n  alpha: -1\n");
        File("lr-nan.yaml", "federation:\n  learning_rate: .nan\n");
        File("baseline-typo.yaml", "baselines: [centralz]\n");
        File("task-typo.yaml", "task: rlhf\n");
        File("syntax.yaml", "federation: [1, 2\n");
        File("dropout.yaml", "lora:\n  dropout: 1.5\n");
        File("rounds-zero.yaml", "federation:\n  rounds: 0\n");
        File("bool-text.yaml", "data:\n  skip_bad: maybe\n");
        File("eval-no-data.yaml", "evaluation:\n  task: mmlu\n");
        Directory.CreateDirectory(T("empty-run"));
        // A train run folder with a checkpoint and a fingerprint of another learning rate.
        File("other-run/checkpoint-5/trainer_state.json", "{}");
        File("other-run/run-fingerprint.json", "{\"training.learning_rate\": \"0.5\"}");
        string[] Train(params string[] more) => ["train", "--model", model, "--data", data, .. more];
        string[] Yaml(string name, params string[] more) => ["simulate", "--config", T(name), .. more];
        return
        [
            ("unknown train option", ["train", "--stepz", "3"], "--stepz (did you mean --steps?)"),
            ("unknown simulate option", ["simulate", "--round", "1"], "--round (did you mean --rounds?)"),
            ("unknown option of eval", ["eval", "--limt", "3"], "--limt (did you mean --limit?)"),
            ("unknown command", ["trian"], "'trian' (did you mean train?)"),
            ("unknown sub-command", ["data", "statz"], "'data statz' (did you mean data stats?)"),
            ("int: text", ["train", "--steps", "abc"], "--steps: 'abc' is not a whole number"),
            ("int: zero", ["train", "--steps", "0"], "--steps: 0 is not a positive whole number"),
            ("int: negative", ["train", "--steps", "-5"], "--steps: -5 is not a positive whole number"),
            ("int: fraction", ["train", "--steps", "1.5"], "--steps: '1.5' is not a whole number"),
            ("int: missing value", ["simulate", "--rounds"], "--rounds needs a value"),
            ("int: overflow", ["simulate", "--rounds", "99999999999"], "--rounds: '99999999999' is not a whole number"),
            ("long: text", ["train", "--seed", "x1"], "--seed: 'x1' is not a whole number"),
            ("double: text", ["train", "--lr", "abc"], "--learning-rate: 'abc' is not a number"),
            ("double: zero rate", ["train", "--learning-rate", "0"], "--learning-rate: 0 is not a positive number"),
            ("double: nan", ["train", "--learning-rate", "nan"], "--learning-rate: nan is not a finite number"),
            ("double: inf", ["train", "--learning-rate", "inf"], "--learning-rate: inf is not a finite number"),
            ("fraction: 1", ["train", "--lora-dropout", "1"], "--lora-dropout: 1 is not a number in [0, 1)"),
            ("non-negative: -1", ["train", "--max-grad-norm", "-1"], "--max-grad-norm: -1 is not a number ≥ 0"),
            ("train lora rank 0", ["train", "--lora-r", "0"], "--lora-r: 0 is not a positive whole number"),
            ("train batch size 0", ["train", "--batch-size", "0"], "--batch-size: 0 is not a positive whole number"),
            ("train eval limit 0", ["train", "--eval-limit", "0"], "--eval-limit: 0 is not a positive whole number"),
            ("threads 0", ["train", "--threads", "0"], "--threads: 0 is not a positive whole number"),
            ("switch with a value", ["train", "--skip-bad=maybe"], "--skip-bad: 'maybe' is not true or false"),
            ("enum: schedule", ["train", "--schedule", "cosin"], "--schedule: 'cosin' is not one of constant, cosine, linear (did you mean cosine?)"),
            ("enum: task", ["train", "--task", "rlhf"], "--task: 'rlhf' is not one of sft, dpo"),
            ("enum: template", ["train", "--template", "alpacca"], "--template: 'alpacca' is not one of"),
            ("enum: base dtype", ["train", "--base-dtype", "fp8"], "--base-dtype: 'fp8' is not one of fp32, bf16, int8, nf4"),
            ("enum: device", ["train", "--device", "tpu"], "--device: 'tpu' is not one of cpu, cuda (cuda:N)"),
            ("list item: target module", ["train", "--lora-target-modules", "q_proj,x_proj"], "--lora-target-modules: 'x_proj' is not one of"),
            ("train --resume without --output", Train("--resume"), "--resume needs --output"),
            ("train --resume on an empty folder", Train("--resume", "--output", T("empty-run")), "--resume: nothing to resume in"),
            ("train --resume on a missing folder", Train("--resume", "--output", T("no-such-run")), "--resume: nothing to resume in"),
            ("train --resume with another learning rate", Train("--resume", "--output", T("other-run"), "--learning-rate", "0.1"), "training.learning_rate: 0.5 → 0.1"),
            ("train: missing model folder", Train("--output", T("out")), "no-such-model"),
            ("simulate rounds text", ["simulate", "--rounds", "abc"], "--rounds: 'abc' is not a whole number"),
            ("simulate rounds 0", ["simulate", "--rounds", "0"], "--rounds: 0 is not a positive whole number"),
            ("clients per round > clients", ["simulate", "--clients", "4", "--clients-per-round", "9"], "--clients-per-round: 9 clients per round but only 4 clients (--clients)"),
            ("clients per round > embedded clients", ["simulate", "--clients-per-round", "11"], "--clients-per-round: 11 clients per round but only 5 clients (the embedded default's federation.clients)"),
            ("dirichlet alpha 0", ["simulate", "--alpha", "0"], "--alpha: 0 is not a positive number"),
            ("dirichlet alpha nan", ["simulate", "--alpha", "nan"], "--alpha: nan is not a finite number"),
            ("partition name", ["simulate", "--partition", "random"], "--partition: 'random' is not one of iid, dirichlet, shards, quantity"),
            ("algorithm name", ["simulate", "--algorithms", "fedavgg"], "--algorithms: 'fedavgg' is not one of"),
            ("baseline name", ["simulate", "--baselines", "centralz"], "--baselines: 'centralz' is not one of local, central, local-continuous, central-continuous, none (did you mean central?)"),
            ("server rate text", ["simulate", "--server-learning-rate", "fast"], "--server-learning-rate 'fast': 'fast' is not a positive number"),
            ("server rate for unknown algorithm", ["simulate", "--server-learning-rate", "fedadamm=0.1"], "--server-learning-rate: 'fedadamm' is not an algorithm"),
            ("server rate 0", ["simulate", "--server-lr", "0"], "--server-learning-rate '0': '0' is not a positive number"),
            ("beta1 = 1", ["simulate", "--beta1", "1"], "--beta1: 1 is not a number in [0, 1)"),
            ("lora dropout < 0", ["simulate", "--lora-dropout", "-0.1"], "--lora-dropout: -0.1 is not a number in [0, 1)"),
            ("eval task name", ["simulate", "--eval-task", "mmlx"], "--eval-task: 'mmlx' is not one of"),
            ("eval task without data", ["simulate", "--eval-task", "mmlu"], "evaluation.data"),
            ("eval task param form", ["simulate", "--eval-task-param", "novalue"], "--eval-task-param 'novalue': expected KEY=VALUE"),
            ("min lr above lr", ["simulate", "--min-learning-rate", "0.1", "--learning-rate", "0.01"], "--min-learning-rate: 0.1 is above the learning rate 0.01 (--learning-rate)"),
            ("simulate task name", ["simulate", "--task", "rlhf"], "--task: 'rlhf' is not one of sft, dpo"),
            ("simulate --resume without --output", ["simulate", "--resume"], "--resume needs --output"),
            ("simulate --resume on an empty folder", ["simulate", "--resume", "--output", T("empty-run")], "--resume: nothing to resume in"),
            ("simulate: missing model folder", ["simulate", "--model", model, "--data", data, "--output", T("sim-out")], "no-such-model"),
            ("config: missing file", ["simulate", "--config", T("missing.yaml")], "missing.yaml: config file not found"),
            ("config: a folder", ["simulate", "--config", dir], "is a folder"),
            ("config: empty file", Yaml("empty.yaml"), "empty.yaml: the file has no settings"),
            ("config: only comments", Yaml("comments.yaml"), "comments.yaml: the file has no settings"),
            ("config: empty section only", Yaml("only-section.yaml"), "only-section.yaml: the file has no settings"),
            ("config: a list at the top", Yaml("list.yaml"), "list.yaml line 1: expected sections"),
            ("config: text for a whole number", Yaml("rounds-abc.yaml"), "rounds-abc.yaml line 2: federation.rounds: 'abc' is not a whole number"),
            ("config: fraction for a whole number", Yaml("rounds-float.yaml"), "rounds-float.yaml line 2: federation.rounds: '1.5' is not a whole number"),
            ("config: unknown key", Yaml("roundz.yaml"), "roundz.yaml line 2: unknown key 'roundz' in section federation (did you mean rounds?)"),
            ("config: unknown section", Yaml("top-typo.yaml"), "top-typo.yaml line 1: unknown key 'federatoin' at the top level (did you mean federation?)"),
            ("config: value for a section", Yaml("section-scalar.yaml"), "section-scalar.yaml line 1: federation is a section"),
            ("config: list for a number", Yaml("rounds-list.yaml"), "rounds-list.yaml line 2: federation.rounds takes a whole number, got a list"),
            ("config: map for a list", Yaml("algorithms-map.yaml"), "algorithms-map.yaml line 2: strategy.algorithms takes a list"),
            ("config: text server rate", Yaml("server-rate-text.yaml"), "server-rate-text.yaml line 2: strategy.server_learning_rates.fedadam: 'fast' is not a number"),
            ("config: server rate of unknown algorithm", Yaml("server-rate-alg.yaml"), "server-rate-alg.yaml line 2 (strategy.server_learning_rates): 'fedadamm' is not an algorithm"),
            ("config: clients per round > clients", Yaml("cpr.yaml"), "cpr.yaml line 3 (federation.clients_per_round): 9 clients per round but only 4 clients"),
            ("config: negative alpha", Yaml("alpha-negative.yaml"), "alpha-negative.yaml line 2 (data.alpha): -1 is not a positive number"),
            ("config: nan learning rate", Yaml("lr-nan.yaml"), "lr-nan.yaml line 2 (federation.learning_rate): nan is not a finite number"),
            ("config: baseline name", Yaml("baseline-typo.yaml"), "baseline-typo.yaml line 1 (baselines): 'centralz' is not one of"),
            ("config: task name", Yaml("task-typo.yaml"), "task-typo.yaml line 1 (task): 'rlhf' is not one of sft, dpo"),
            ("config: YAML syntax", Yaml("syntax.yaml"), "syntax.yaml line"),
            ("config: dropout 1.5", Yaml("dropout.yaml"), "dropout.yaml line 2 (lora.dropout): 1.5 is not a number in [0, 1)"),
            ("config: rounds 0", Yaml("rounds-zero.yaml"), "rounds-zero.yaml line 2 (federation.rounds): 0 is not a positive whole number"),
            ("config: text for a switch", Yaml("bool-text.yaml"), "bool-text.yaml line 2: data.skip_bad: 'maybe' is not true or false"),
            ("config: eval task without data", Yaml("eval-no-data.yaml"), "evaluation.data"),
            ("config: flag overrides a bad value", Yaml("rounds-zero.yaml", "--clients-per-round", "0"), "--clients-per-round: 0 is not a positive whole number"),
            ("eval: negative limit", ["eval", "--limit", "-1"], "--limit: -1 is not a whole number ≥ 0"),
            ("eval: task name", ["eval", "--task", "humaneva"], "--task: 'humaneva' is not one of"),
            ("eval: batch size 0", ["eval", "--batch-size", "0"], "--batch-size: 0 is not a positive whole number"),
            ("generate: temperature nan", ["generate", "--temperature", "nan", "hi"], "--temperature: nan is not a finite number"),
            ("generate: temperature < 0", ["generate", "--temperature", "-1", "hi"], "--temperature: -1 is not a number ≥ 0"),
            ("generate: top-p > 1", ["generate", "--top-p", "1.5", "hi"], "--top-p: 1.5 is not a number in [0, 1]"),
            ("generate: zero tokens", ["generate", "--max-new-tokens", "0", "hi"], "--max-new-tokens: 0 is not a positive whole number"),
            ("generate: template", ["generate", "--template", "alpacaa", "hi"], "--template: 'alpacaa' is not one of"),
            ("data stats: zero clients", ["data", "stats", "--clients", "0"], "--clients: 0 is not a positive whole number"),
            ("data stats: partition name", ["data", "stats", "--partition", "foo"], "--partition: 'foo' is not one of"),
            ("data stats: no data", ["data", "stats", "--dataset", "alpaca"], "--data is required"),
            ("data split: clients text", ["data", "split", "--clients", "abc"], "--clients: 'abc' is not a whole number"),
            ("merge: dtype name", ["merge", "--dtype", "fp64"], "--dtype: 'fp64' is not one of fp32, bf16, fp16"),
            ("export: type name", ["export", "--type", "q4"], "--type: 'q4' is not one of f32, f16, q8_0"),
            ("certs: no output folder", ["certs"], "--output DIR is required"),
        ];
    }

    [Fact]
    public void Every_bad_input_is_refused_with_a_message_naming_it_and_no_internals()
    {
        var table = new StringBuilder();
        table.Append("# CLI error messages\n\n");
        table.Append("Generated by `BadInputSweepTests` (tests/FedLlm.Tests/Cli): each bad input, run through the command app, and what\n");
        table.Append("the user reads on standard error (exit code 2 for bad input, 1 for a failure while working). `<tmp>` is the test's\n");
        table.Append("temporary folder. Regenerate with `FEDLLM_UPDATE_DOCS=1 dotnet test --filter BadInputSweepTests`.\n\n");
        table.Append("| case | command | exit | message |\n| --- | --- | --- | --- |\n");
        var failures = new List<string>();
        var cases = Cases();
        Assert.True(cases.Count >= 60, $"only {cases.Count} cases");
        foreach (var (name, args, expected) in cases)
        {
            var error = new StringWriter();
            int code = FedLlmApp.Run(args, error);
            string message = error.ToString().ReplaceLineEndings("\n").Trim();
            if (code == 0) failures.Add($"{name}: exit 0\n{message}");
            if (!message.Contains(expected, StringComparison.Ordinal)) failures.Add($"{name}: expected '{expected}' in\n{message}");
            foreach (var fragment in Forbidden)
                if (message.Contains(fragment, StringComparison.Ordinal)) failures.Add($"{name}: internal fragment '{fragment}' in\n{message}");
            string shown = message.Replace(dir, "<tmp>").Replace("\n", "<br>").Replace("|", "\\|");
            string command = string.Join(" ", args.Select(a => a.Replace(dir, "<tmp>"))).Replace("|", "\\|");
            table.Append($"| {name} | `fedllm {command}` | {code} | {shown} |\n");
        }
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        RepositoryFiles.AssertCurrent("docs/cli-errors.md", table.ToString(),
            "regenerate with FEDLLM_UPDATE_DOCS=1 dotnet test --filter BadInputSweepTests");
    }
}
