using FedLlm.Data;
using FedLlm.Evaluation;
using FedLlm.Evaluation.Code;
using FedLlm.Evaluation.Tasks;

namespace FedLlm.Tests.Evaluation.Code;

public class CodeTaskTests
{
    private static readonly string HumanEvalPath = Path.Combine(AppContext.BaseDirectory, "Fixtures", "eval", "humaneval_sample.jsonl");
    private static readonly string MbppPath = Path.Combine(AppContext.BaseDirectory, "Fixtures", "eval", "mbpp_sample.jsonl");
    private static readonly EvaluationRunOptions Run = new() { BatchSize = 8, MaxNewTokens = 64 };

    // Millisecond programs; the timeout only bounds a loaded CI machine (the timeout test sets its own).
    private static readonly SandboxOptions Generous = new() { Timeout = TimeSpan.FromSeconds(10) };

    private static EvaluationTaskSpec Spec(string name, string path, params (string Key, string Value)[] parameters) =>
        new(name, path, parameters.ToDictionary(p => p.Key, p => p.Value));

    [Fact]
    public void HumanEval_reads_the_published_layout()
    {
        var problems = HumanEvalProblem.ReadJsonl(HumanEvalPath);
        Assert.Equal(["HumanEval/0", "HumanEval/1", "HumanEval/2"], problems.Select(p => p.TaskId));
        Assert.Equal("running_max", problems[1].EntryPoint);
        Assert.StartsWith("    result = []", problems[1].CanonicalSolution);
    }

    [Fact]
    public void HumanEval_completion_is_cut_at_the_first_stop_sequence()
    {
        Assert.Equal("    return a + b\n", HumanEvalProblem.Truncate("    return a + b\n\ndef other():\n    pass"));
        Assert.Equal("    x = 1\n    return x", HumanEvalProblem.Truncate("    x = 1\n    return x\nif __name__ == '__main__':\n    main()"));
        Assert.Equal("    return 1", HumanEvalProblem.Truncate("    return 1\nprint(1)\n# done"));
        // Indented lines that merely start with a stop word are part of the body.
        Assert.Equal("    if a:\n        return 1\n    # two\n", HumanEvalProblem.Truncate("    if a:\n        return 1\n    # two\n"));
    }

    [Fact]
    public void HumanEval_canonical_solutions_pass_and_wrong_ones_fail()
    {
        var problems = HumanEvalProblem.ReadJsonl(HumanEvalPath).ToDictionary(p => p.Prompt);
        // Trailing junk after a stop sequence would raise NameError if the completion were not truncated.
        var canonical = new ScriptedCompletionModel((prompt, _) => problems[prompt].CanonicalSolution + "\nprint(undefined_name)\n");
        var task = HumanEvalTask.FromSpec(Spec("humaneval", HumanEvalPath, ("timeout", "10")));
        var report = task.Evaluate(canonical, Run);
        Assert.Equal(3, report.Items);
        Assert.Equal(1.0, report.Metrics["pass@1"]);
        Assert.All(report.Samples, s => Assert.Equal("passed", s.Reference));
        Assert.False(report.Metrics.ContainsKey("pass@10"));
        // One sample: greedy, and the HumanEval stop sequences passed to the model.
        var call = Assert.Single(canonical.Calls);
        Assert.Equal(0.0, call.Options.Temperature);
        Assert.Contains("\ndef", call.Options.StopStrings);

        var wrong = new ScriptedCompletionModel((_, _) => "    return None\n");
        var failed = task.Evaluate(wrong, Run);
        Assert.Equal(0.0, failed.Metrics["pass@1"]);
        Assert.Equal(1.0, failed.Metrics["failed"]);
        Assert.All(failed.Samples, s => Assert.StartsWith("failed: AssertionError", s.Reference));
    }

    [Fact]
    public void HumanEval_pass_at_k_over_sampled_completions_matches_the_estimator_by_hand()
    {
        // Problem 0: samples 0 and 3 of 5 correct (c=2); problem 2: all 5 correct; problem 1 left out by the limit.
        var problems = HumanEvalProblem.ReadJsonl(HumanEvalPath);
        var model = new ScriptedCompletionModel((prompt, asked) =>
            prompt == problems[0].Prompt ? (asked is 0 or 3 ? "    return a + b\n" : "    return a - b\n") : problems[2].CanonicalSolution);
        var task = new HumanEvalTask([problems[0], problems[2]], new CodeSamplingOptions { Samples = 5, K = [1, 2, 3, 10], Sandbox = Generous });
        var report = task.Evaluate(model, Run with { BatchSize = 10 });
        // pass@1 = (0.4 + 1)/2, pass@2 = (0.7 + 1)/2, pass@3 = (0.9 + 1)/2; pass@10 needs 10 samples.
        Assert.Equal(0.7, report.Metrics["pass@1"], 12);
        Assert.Equal(0.85, report.Metrics["pass@2"], 12);
        Assert.Equal(0.95, report.Metrics["pass@3"], 12);
        Assert.False(report.Metrics.ContainsKey("pass@10"));
        Assert.Equal(7.0 / 10.0, report.Metrics["passed"], 12);
        Assert.Equal(10, report.Samples.Count);
        Assert.Equal("HumanEval/0#3", report.Samples[3].Id);
        Assert.Equal(1, report.Samples[3].Score);
        // Several samples are drawn at the default temperature 0.8.
        Assert.All(model.Calls, c => Assert.Equal(0.8, c.Options.Temperature));
    }

    [Fact]
    public void HumanEval_an_endless_completion_times_out_and_counts_as_a_failure()
    {
        var problems = HumanEvalProblem.ReadJsonl(HumanEvalPath);
        var model = new ScriptedCompletionModel((_, _) => "    while True:\n        pass\n");
        var task = HumanEvalTask.FromSpec(Spec("humaneval", HumanEvalPath, ("timeout", "1"), ("workers", "2")));
        var report = task.Evaluate(model, Run with { Limit = 1 });
        Assert.Equal(1, report.Items);
        Assert.Equal(0.0, report.Metrics["pass@1"]);
        Assert.Equal(1.0, report.Metrics["timed_out"]);
        Assert.StartsWith("timed out", Assert.Single(report.Samples).Reference);
    }

    [Fact]
    public void Mbpp_prompt_is_lm_eval_harness_layout_with_few_shot_examples()
    {
        var problems = MbppProblem.ReadJsonl(MbppPath);
        var task = new MbppTask(problems, new CodeSamplingOptions());
        var fib = problems.Single(p => p.TaskId == "13");
        Assert.Equal(
            "You are an expert Python programmer, and here is your task: Write a function to return the n-th Fibonacci number. " +
            "Your code should pass these tests:\n\nassert fib(0) == 0\nassert fib(1) == 1\nassert fib(10) == 55\n[BEGIN]\n",
            task.FormatPrompt(fib, 0));
        var twoShot = task.FormatPrompt(fib, 2);
        Assert.StartsWith("You are an expert Python programmer, and here is your task: Write a function to find the common elements", twoShot);
        Assert.Contains("return tuple(sorted(set(a) & set(b)))\n[DONE]\n\nYou are an expert Python programmer, and here is your task: Write a python function to check whether", twoShot);
        Assert.EndsWith(task.FormatPrompt(fib, 0), twoShot);
        // The fixture holds two of lm-eval's three shot problems (task ids 2, 3, 4).
        var error = Assert.Throws<ArgumentException>(() => task.FormatPrompt(fib, 3));
        Assert.Contains("fewshot=FILE", error.Message);
    }

    [Fact]
    public void Mbpp_scores_reference_code_as_passing_with_setup_code_and_skips_the_shots()
    {
        var problems = MbppProblem.ReadJsonl(MbppPath);
        var byPrompt = new MbppTask(problems, new CodeSamplingOptions());
        // The model answers with the reference code inside a fenced block followed by [DONE] and junk.
        var model = new ScriptedCompletionModel((prompt, _) =>
        {
            var problem = problems.Single(p => prompt.EndsWith(p.Prompt(), StringComparison.Ordinal));
            return problem.TaskId == "11" ? "def remove_occ(s, ch):\n  return s.replace(ch, '')\n[DONE] junk" : "```python\n" + problem.Code + "\n```\n[DONE]\nnot code";
        });
        var task = MbppTask.FromSpec(Spec("mbpp", MbppPath, ("challenge_tests", "true"), ("timeout", "10")));
        var report = task.Evaluate(model, Run with { FewShot = 2 });
        // Task ids 2 and 3 are the shots; 11 (wrong: removes every occurrence), 12 (needs its setup code) and 13 are scored.
        Assert.Equal(3, report.Items);
        Assert.Equal(["11", "12", "13"], report.Samples.Select(s => s.Id));
        Assert.Equal([0.0, 1.0, 1.0], report.Samples.Select(s => s.Score));
        Assert.Equal(2.0 / 3.0, report.Metrics["pass@1"], 12);
        Assert.Equal(["[DONE]"], Assert.Single(model.Calls).Options.StopStrings);
    }

    [Fact]
    public void Mbpp_split_scores_only_that_splits_task_ids_and_still_finds_the_shots()
    {
        var model = new ScriptedCompletionModel((_, _) => "def f():\n  pass");
        var task = (MbppTask)MbppTask.FromSpec(Spec("mbpp", MbppPath, ("split", "test"), ("timeout", "10")));
        var report = task.Evaluate(model, Run with { FewShot = 2 });
        // Ids 11, 12, 13 are in the test split (11–510); 2 and 3 are in the prompt split and serve as the shots.
        Assert.Equal(["11", "12", "13"], report.Samples.Select(s => s.Id));
        Assert.All(Assert.Single(model.Calls).Prompts, p => Assert.StartsWith(
            "You are an expert Python programmer, and here is your task: Write a function to find the common elements", p));
        var error = Assert.Throws<ArgumentException>(() => MbppTask.FromSpec(Spec("mbpp", MbppPath, ("split", "validation"))));
        Assert.Contains("511–600", error.Message);
    }

    [Fact]
    public void An_entry_point_that_is_not_a_python_name_is_refused_at_load()
    {
        var marker = Path.Combine(Path.GetTempPath(), $"fedllm-injected-{Guid.NewGuid():N}");
        var path = Path.Combine(Path.GetTempPath(), $"fedllm-humaneval-{Guid.NewGuid():N}.jsonl");
        // Pasted into check(...), this would run a shell command before the tests.
        var injected = $"f); __import__('posix').system('touch {marker}')#";
        File.WriteAllText(path, System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string>
        {
            ["task_id"] = "HumanEval/7", ["prompt"] = "def f():\n", ["test"] = "def check(c):\n    pass\n", ["entry_point"] = injected,
        }) + "\n");
        try
        {
            var error = Assert.Throws<DataFormatException>(() => HumanEvalProblem.ReadJsonl(path));
            Assert.Equal("entry_point", error.Field);
            Assert.Contains(path, error.Message);
            Assert.Contains("HumanEval/7", error.Message);
        }
        finally
        {
            File.Delete(path);
        }

        // A record built in code is checked where the program is built.
        var problem = new HumanEvalProblem("HumanEval/7", "def f():\n", "", "def check(c):\n    pass\n", injected);
        Assert.Contains("HumanEval/7", Assert.Throws<ArgumentException>(() => problem.Program("    return 1\n")).Message);
        Assert.False(File.Exists(marker));
    }

    [Theory]
    [InlineData("running_max", true)]
    [InlineData("_private2", true)]
    [InlineData("match", true)] // a soft keyword is a valid name
    [InlineData("def", false)]
    [InlineData("None", false)]
    [InlineData("2fast", false)]
    [InlineData("f)", false)]
    [InlineData("f\n", false)]
    [InlineData("", false)]
    public void Python_identifiers_are_told_from_code(string name, bool valid) => Assert.Equal(valid, PythonIdentifier.IsValid(name));

    [Fact]
    public void Bad_files_and_parameters_are_named_in_the_error()
    {
        var path = Path.Combine(Path.GetTempPath(), $"fedllm-humaneval-{Guid.NewGuid():N}.jsonl");
        File.WriteAllText(path, "{\"task_id\": \"HumanEval/0\", \"prompt\": \"def f():\\n\", \"test\": \"\", \"entry_point\": \"f\"}\n{\"task_id\": \"HumanEval/1\", \"prompt\": 3}\n");
        try
        {
            var error = Assert.Throws<DataFormatException>(() => HumanEvalProblem.ReadJsonl(path));
            Assert.Equal(2, error.LineNumber);
            Assert.Equal("prompt", error.Field);
            Assert.Contains(path, error.Message);
        }
        finally
        {
            File.Delete(path);
        }

        var unknown = Assert.Throws<ArgumentException>(() => HumanEvalTask.FromSpec(Spec("humaneval", HumanEvalPath, ("sample", "5"))));
        Assert.Contains("'sample'", unknown.Message);
        var greedy = Assert.Throws<ArgumentException>(() => HumanEvalTask.FromSpec(Spec("humaneval", HumanEvalPath, ("samples", "5"), ("temperature", "0"))));
        Assert.Contains("temperature", greedy.Message);
        var badNumber = Assert.Throws<ArgumentException>(() => MbppTask.FromSpec(Spec("mbpp", MbppPath, ("samples", "many"))));
        Assert.Contains("'samples'", badNumber.Message);
    }
}
