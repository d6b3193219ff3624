using System.Text.Json.Nodes;
using FedLlm.Runs;
using FedLlm.Data;
using FedLlm.Evaluation;
using FedLlm.Federation;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Tests.Data;
using static TorchSharp.torch;

namespace FedLlm.Tests.Evaluation;

public class RoundTaskEvaluationTests
{
    [Fact]
    public async Task A_federated_run_scores_the_task_every_k_rounds_and_writes_it_to_metrics_jsonl()
    {
        using var dir = new TempDirectory();
        using var model = LlamaForCausalLM.CreateRandom(TinyModels.Llama(tied: true) with { VocabSize = 140 }, seed: 21, std: 0.2);
        var lora = new LoraOptions { Rank = 2, Alpha = 4, Dropout = 0 };
        LoraInjector.Inject(model, lora, new Generator(4));
        var tokenizer = new CharTokenizer();
        var options = new FederationOptions
        {
            Rounds = 3, TotalClients = 2, ClientsPerRound = 2, LocalSteps = 1, BatchSize = 2, LearningRate = 5e-2, MinLearningRate = 5e-2,
            Seed = 5, EvaluateEvery = 0,
        };
        var rng = new Random(3);
        var shards = Enumerable.Range(0, 2).Select(_ => (IReadOnlyList<SftExample>)Enumerable.Range(0, 4).Select(_ =>
        {
            var ids = Enumerable.Range(0, 6).Select(_ => rng.Next(10, 140)).ToArray();
            return new SftExample(ids, ids.Select((id, i) => i < 2 ? -100 : id).ToArray(), 2, false, true);
        }).ToList()).ToList();
        var task = EvaluationTaskRegistry.Create(new EvaluationTaskSpec("mc", EvalFixtures.Path("mc.jsonl"), new Dictionary<string, string>()));
        var roundTask = new RoundTaskEvaluation(task, new EvaluationRunOptions { BatchSize = 4 }, every: 2);
        var runner = new SimulationRunner(model, tokenizer, PromptTemplate.Alpaca, options, lora, heldOut: null, baseModel: null, roundTask);

        var outcome = await runner.RunFederatedAsync(StrategyFactory.Create("fedavg", new StrategyOptions { TotalClients = 2 }), shards, dir.Path, resume: false);

        // Every 2 rounds: round index 1, and the last round (index 2); not round 0.
        Assert.Null(outcome.Rounds[0].TaskMetrics);
        Assert.Equal(["mc/accuracy", "mc/acc_norm", "mc/accuracy_macro", "mc/acc_norm_macro"], outcome.Rounds[1].TaskMetrics!.Keys);
        Assert.NotNull(outcome.Rounds[2].TaskMetrics);
        // The scores are those of the round's global adapter: re-score the saved adapter of round 3 (index 2) independently.
        AdapterIO.Load(Path.Combine(dir.Path, "rounds", "round-3"), model);
        var again = task.Evaluate(new CausalLmEvaluationModel(model, tokenizer), new EvaluationRunOptions());
        Assert.Equal(again.Metrics["accuracy"], outcome.Rounds[2].TaskMetrics!["mc/accuracy"]);
        Assert.Equal(again.Metrics["acc_norm"], outcome.Rounds[2].TaskMetrics!["mc/acc_norm"]);
        var lines = File.ReadAllLines(Path.Combine(dir.Path, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(outcome.Rounds[1].TaskMetrics!["mc/accuracy"], lines[1]["task_metrics"]!["mc/accuracy"]!.GetValue<double>());
        Assert.Equal(2, lines[1]["round"]!.GetValue<int>());
        Assert.Null(lines[0]["task_metrics"]);
    }

    [Fact]
    public void The_yaml_section_builds_the_hook_and_rejects_a_task_without_data()
    {
        var section = new RunConfig.EvaluationSection { Task = "fpb", Data = EvalFixtures.Path("fpb", "Sentences_50Agree.txt"), Every = 3, Params = { ["split"] = "all" } };
        var hook = section.Create(seed: 1)!;
        Assert.Equal("fpb", hook.Task.Name);
        Assert.Equal(3, hook.Every);
        Assert.Equal(10, hook.Options.MaxNewTokens); // the sentiment task's own default
        Assert.True(hook.IsDue(2, 10) && !hook.IsDue(3, 10) && hook.IsDue(9, 10));
        Assert.Null(new RunConfig.EvaluationSection().Create(1));
        Assert.Throws<ArgumentException>(() => new RunConfig.EvaluationSection { Task = "fpb" }.Create(1));
    }

    [Fact]
    public void Run_yaml_evaluation_keys_are_snake_case()
    {
        using var dir = new TempDirectory();
        string path = dir.File("run.yaml", $"evaluation:\n  task: fpb\n  data: {EvalFixtures.Path("fpb", "Sentences_50Agree.txt")}\n  every: 4\n  limit: 2\n  few_shot: 0\n  max_new_tokens: 6\n  params:\n    split: all\n");
        var config = RunConfig.Load(path);
        Assert.Equal("fpb", config.Evaluation.Task);
        Assert.Equal(4, config.Evaluation.Every);
        Assert.Equal("all", config.Evaluation.Params["split"]);
        var hook = config.Evaluation.Create(seed: 1)!;
        Assert.Equal(6, hook.Options.MaxNewTokens);
        Assert.Equal(2, hook.Options.Limit);
    }
}
