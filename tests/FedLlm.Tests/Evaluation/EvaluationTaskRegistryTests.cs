using FedLlm.Evaluation;
using FedLlm.Evaluation.Tasks;

namespace FedLlm.Tests.Evaluation;

public class EvaluationTaskRegistryTests
{
    static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "eval", name);

    static EvaluationTaskSpec Spec(string name, string file, params (string Key, string Value)[] parameters) =>
        new(name, Fixture(file), parameters.ToDictionary(p => p.Key, p => p.Value));

    [Fact]
    public void Code_and_judged_benchmarks_are_reachable_by_name_with_their_parameters()
    {
        var humaneval = EvaluationTaskRegistry.Create(Spec("HumanEval", "humaneval_sample.jsonl", ("samples", "3")));
        Assert.IsType<HumanEvalTask>(humaneval);
        Assert.Equal("humaneval", humaneval.Name);
        Assert.IsType<MbppTask>(EvaluationTaskRegistry.Create(Spec("mbpp", "mbpp_sample.jsonl")));
        // A judged benchmark without a judge is refused before any generation, naming the parameter to set.
        var error = Assert.Throws<ArgumentException>(() => EvaluationTaskRegistry.Create(Spec("mt_bench", "mt_bench_question.jsonl")));
        Assert.Contains("judge", error.Message);
        // A typo in a parameter is an error, not a silently ignored setting.
        Assert.Throws<ArgumentException>(() => EvaluationTaskRegistry.Create(Spec("humaneval", "humaneval_sample.jsonl", ("sample", "3"))));
        Assert.Equal(512, EvaluationTaskRegistry.Find("mbpp").DefaultMaxNewTokens);
        Assert.NotNull(EvaluationTaskRegistry.Find("vicuna_bench").CreateWithTokenizer);
    }

    [Fact]
    public void An_unknown_task_lists_every_known_name()
    {
        var error = Assert.Throws<ArgumentException>(() => EvaluationTaskRegistry.Find("humanevel"));
        foreach (var name in new[] { "mmlu", "gsm8k", "fpb", "humaneval", "mbpp", "mt_bench", "vicuna_bench" })
            Assert.Contains(name, error.Message);
    }
}
