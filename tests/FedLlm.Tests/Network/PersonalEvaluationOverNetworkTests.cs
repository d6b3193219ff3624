using FedLlm.Federation;
using FedLlm.Federation.Personalization;
using FedLlm.Federation.Strategies;
using FedLlm.Network;
using FedLlm.Tests.Data;

namespace FedLlm.Tests.Network;

/// <summary>Per-client evaluation over the network: what the server combines, and the settings it refuses.</summary>
public class PersonalEvaluationOverNetworkTests
{
    static PersonalEvaluationOnClients Wrap(int every, int rounds, string? hook = "ditto") =>
        new(StrategyFactory.BuiltIn.Create("fedavg", new StrategyOptions()), every, rounds, hook);

    [Fact]
    public void Evaluation_tasks_come_after_the_last_round_and_every_N_rounds_and_name_the_personal_hook()
    {
        // Prepare
        var afterLast = Wrap(every: 0, rounds: 3);
        var everyTwo = Wrap(every: 2, rounds: 5, hook: null);

        // Execute / Assert
        Assert.Null(afterLast.ConfigureEvaluate(0));
        Assert.Null(afterLast.ConfigureEvaluate(1));
        var task = afterLast.ConfigureEvaluate(2)!;
        Assert.True(PersonalEvaluationOnClients.Asks(task));
        Assert.Equal("ditto", task.Config[PersonalEvaluationOnClients.PersonalHookKey]);
        Assert.Equal(new[] { 1, 3, 4 }, Enumerable.Range(0, 5).Where(r => everyTwo.ConfigureEvaluate(r) is not null));
        Assert.False(everyTwo.ConfigureEvaluate(4)!.Config.ContainsKey(PersonalEvaluationOnClients.PersonalHookKey));
        Assert.False(PersonalEvaluationOnClients.Asks(new ClientInstructions(0, 0)));
    }

    [Fact]
    public void The_means_are_weighted_by_held_out_size_and_each_client_keeps_its_own_row()
    {
        // Prepare: 1 and 3 held-out examples; the unweighted mean (0.5) would differ from the weighted one.
        var results = new[]
        {
            new ClientEvaluation("client-0", 1, PersonalEvaluationOnClients.ClientMetrics(1, new EvaluationResult(2.0, 1.0), new EvaluationResult(1.0, 1.0))),
            new ClientEvaluation("client-1", 3, PersonalEvaluationOnClients.ClientMetrics(3, new EvaluationResult(4.0, 0.0), new EvaluationResult(0.5, 2.0 / 3))),
        };

        // Execute
        var combined = Wrap(0, 1).AggregateEvaluate(0, results);

        // Assert: (1·2 + 3·4)/4 = 3.5; (1·1 + 3·0)/4 = 0.25; personal (1·1 + 3·0.5)/4 = 0.625, (1 + 2)/4 = 0.75.
        Assert.Equal(3.5, combined["global_loss"]);
        Assert.Equal(0.25, combined["global_exact_match"]);
        Assert.Equal(0.625, combined["personal_loss"]);
        Assert.Equal(0.75, combined["personal_exact_match"], 15);
        Assert.Equal(3.0, combined["client-1/held_out_examples"]);
        Assert.Equal(4.0, combined["client-1/global_loss"]);
        Assert.Equal(1.0, combined["client-0/personal_loss"]);
        Assert.False(combined.ContainsKey("held_out_examples"));
    }

    static string ServerYaml(string extra, string federation = "") => $"""
        task: sft
        model:
          path: /nonexistent/model
        federation:
          rounds: 2
          {federation}
        strategy:
          algorithms: [ditto]
        server:
          listen: 127.0.0.1:0
          roster: [client-0, client-1]
        {extra}
        """;

    static ArgumentException Refusal(string extra, string federation = "")
    {
        using var temp = new TempDirectory();
        string path = Path.Combine(temp.Path, "server.yaml");
        File.WriteAllText(path, ServerYaml(extra, federation));
        // As the server starts: the config's own checks, then the run's (FederatedRun.PrepareServer validates).
        return Assert.Throws<ArgumentException>(() => ServerConfig.Load(path).ToRunOptions().Validate(FedLlm.Runs.FederatedRun.DefaultAlgorithms));
    }

    [Theory]
    [InlineData("data:\n  client_eval_fraction: 0.2\npersonalization:\n  finetune_steps: 5", "personalization.finetune_steps")]
    [InlineData("data:\n  client_eval_fraction: 0.2\npersonalization:\n  local_only: true", "personalization.local_only")]
    [InlineData("data:\n  client_eval_fraction: 0.2", "data.client_eval_fraction without a personalization: section")]
    [InlineData("personalization: {}", "data.client_eval_fraction")]
    public void A_server_refuses_what_per_client_evaluation_over_the_network_cannot_do(string extra, string named)
    {
        var refusal = Refusal(extra);
        Assert.Contains(named, refusal.Message);
    }

    [Fact]
    public void A_server_refuses_federated_evaluation_without_a_client_split_instead_of_silently_skipping_it()
    {
        // Network clients score only their own held-out split: without one, no evaluation would ever be answered.
        var refusal = Refusal("", federation: "federated_evaluate_every: 1");
        Assert.Contains("federation.federated_evaluate_every", refusal.Message);
        Assert.Contains("personalization:", refusal.Message);
    }

    [Fact]
    public void A_server_with_per_client_evaluation_passes_the_fraction_and_the_section_to_the_run()
    {
        using var temp = new TempDirectory();
        string path = Path.Combine(temp.Path, "server.yaml");
        File.WriteAllText(path, ServerYaml("data:\n  client_eval_fraction: 0.25\npersonalization:\n  ditto_lambda: 0.3"));
        var options = ServerConfig.Load(path).ToRunOptions();
        Assert.Equal(0.25, options.Data.ClientEvalFraction);
        Assert.NotNull(options.Personalization);
        Assert.Equal(0.3, options.StrategyOptionsFor("ditto").DittoLambda);
    }
}
