using FedLlm.Cli;
using FedLlm.Cli.Commands;
using FedLlm.Cli.Parsing;
using FedLlm.Configuration;
using FedLlm.Evaluation;
using FedLlm.Runs;

namespace FedLlm.Tests.Cli;

/// <summary>The naming scheme and the reference: every option described with its default, simulate's flags one to one
/// with run.yaml keys under one naming rule, docs/cli.md generated from the definitions, one precedence rule.</summary>
public sealed class CliConventionTests
{
    [Fact]
    public void Docs_cli_md_is_generated_from_the_command_definitions() =>
        RepositoryFiles.AssertCurrent("docs/cli.md", CliReference.Markdown(),
            "regenerate with `dotnet run --project src/FedLlm.Cli -- docs > docs/cli.md` (or FEDLLM_UPDATE_DOCS=1 dotnet test --filter CliConventionTests)");

    [Fact]
    public void Every_option_of_every_command_has_a_description_and_shows_a_default()
    {
        var missing = FedLlmApp.Commands.Where(c => !c.Hidden)
            .SelectMany(c => OptionTable.Rows(c).Where(r => r.Description.Trim().Length == 0 || r.Default.Length == 0)
                .Select(r => $"fedllm {c.Path} {r.Names}: description '{r.Description}', default '{r.Default}'"))
            .ToList();
        Assert.True(missing.Count == 0, string.Join("\n", missing));
    }

    [Fact]
    public void Simulate_flags_and_run_yaml_keys_are_one_to_one_under_the_naming_rule()
    {
        var flags = OptionInfo.Of(typeof(SimulateSettings)).Where(o => o.ConfigKey is not null).ToList();
        var problems = new List<string>();
        foreach (var key in RunConfigSchema.Keys.Where(k => k.Path != "strategy.server_learning_rates"))
        {
            var matching = flags.Where(f => f.ConfigKey!.Path == key.Path).ToList();
            if (matching.Count != 1) problems.Add($"{key.Path}: {matching.Count} flags");
            else if (matching[0].Name != FlagFor(key)) problems.Add($"{key.Path}: flag {matching[0].Name}, the rule says {FlagFor(key)}");
        }
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    /// <summary>The rule docs/cli.md states: the key's last part with dashes; lora, privacy, robust, attack, personalization and async keys
    /// prefixed with their section, evaluation keys eval-task-; a section's path is the section's name.</summary>
    static string FlagFor(RunConfigKey key)
    {
        string name = key.Name.Replace('_', '-');
        return key.Section switch
        {
            "model" or "data" when key.Name == "path" => "--" + key.Section,
            "lora" => "--lora-" + name,
            "privacy" or "robust" or "attack" or "personalization" => $"--{key.Section}-{name}",
            "async" when key.Name == "enabled" => "--async",
            "async" => "--async-" + name,
            "secure_aggregation" when key.Name == "enabled" => "--secure-aggregation",
            "secure_aggregation" => "--secagg-" + name,
            "evaluation" when key.Name == "task" => "--eval-task",
            "evaluation" when key.Name == "params" => "--eval-task-param",
            "evaluation" => "--eval-task-" + name,
            _ => "--" + name,
        };
    }

    [Fact]
    public void Eval_task_names_are_the_registry_names() =>
        Assert.Equal(EvaluationTaskRegistry.Names, new OneOfAttribute(EvalSettings.TaskNames).Names);

    [Fact]
    public void A_plain_server_learning_rate_flag_overrides_the_embedded_per_algorithm_rates()
    {
        // Prepare: the embedded default tunes fedadam's rate to 0.01.
        var config = RunConfig.EmbeddedDefault("sft");
        Assert.Equal(0.01, config.ToRunOptions("x").StrategyOptionsFor("fedadam").ServerLearningRate);
        // Execute
        SimulateCommand.Apply(config, new SimulateSettings { ServerLearningRate = "0.001" });
        var options = config.ToRunOptions("x");
        // Assert: the flag wins for every algorithm.
        foreach (var algorithm in new[] { "fedadam", "fedyogi", "fedadagrad", "fedavgm" })
            Assert.Equal(0.001, options.StrategyOptionsFor(algorithm).ServerLearningRate);
    }

    [Fact]
    public void A_per_algorithm_server_rate_flag_replaces_only_the_named_algorithm()
    {
        var config = RunConfig.EmbeddedDefault("sft");
        SimulateCommand.Apply(config, new SimulateSettings { ServerLearningRate = "fedadam=0.02" });
        var options = config.ToRunOptions("x");
        Assert.Equal(0.02, options.StrategyOptionsFor("fedadam").ServerLearningRate);
        Assert.Equal(0.003, options.StrategyOptionsFor("fedyogi").ServerLearningRate);
    }

    [Fact]
    public void Flags_win_over_the_yaml_file()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "federation:\n  rounds: 7\n  learning_rate: 0.01\n");
            var config = RunConfigFile.Load(path).Config;
            SimulateCommand.Apply(config, new SimulateSettings { Rounds = 3 });
            var f = config.ToRunOptions("x").Federation;
            Assert.Equal(3, f.Rounds);
            Assert.Equal(0.01, f.LearningRate);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("baselines: [none]\n")]
    [InlineData("baselines: none\n")]
    public void Baselines_none_in_yaml_and_as_a_flag_mean_no_baseline(string yaml)
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, yaml);
            var fromYaml = RunConfigFile.Load(path).Config;
            RunConfigValidator.Validate(fromYaml);
            var fromFlag = RunConfig.EmbeddedDefault("sft");
            SimulateCommand.Apply(fromFlag, new SimulateSettings { Baselines = "none" });
            Assert.Empty(fromYaml.ToRunOptions("x").Baselines);
            Assert.Empty(fromFlag.ToRunOptions("x").Baselines);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Centralized_is_accepted_as_the_old_name_of_central()
    {
        var config = RunConfig.EmbeddedDefault("sft");
        SimulateCommand.Apply(config, new SimulateSettings { Baselines = "local,centralized" });
        RunConfigValidator.Validate(config);
        Assert.Equal(["local", "central"], config.ToRunOptions("x").Baselines);
    }

    [Fact]
    public void The_printed_configuration_reads_back_to_the_same_run()
    {
        // Prepare: the embedded default with two flags, one of which clears the per-algorithm rates.
        var config = RunConfig.EmbeddedDefault("sft");
        SimulateCommand.Apply(config, new SimulateSettings { Rounds = 3, ServerLearningRate = "0.002", Partition = "shards" });
        string yaml = RunConfigPrinter.ToYaml(config, _ => "test");
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, yaml);
            // Execute
            var read = RunConfigFile.Load(path).Config;
            // Assert: every resolved option agrees.
            var expected = RunFingerprint.Empty.WithProperties("run", config.ToRunOptions("x")).Values;
            var actual = RunFingerprint.Empty.WithProperties("run", read.ToRunOptions("x")).Values;
            var differing = expected.Keys.Union(actual.Keys).Where(k => expected.GetValueOrDefault(k) != actual.GetValueOrDefault(k))
                .Select(k => $"{k}: {expected.GetValueOrDefault(k)} vs {actual.GetValueOrDefault(k)}").ToList();
            Assert.True(differing.Count == 0, string.Join("\n", differing) + "\n" + yaml);
            Assert.Contains("rounds: 3  # test", yaml);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Print_config_marks_where_each_value_came_from()
    {
        var settings = new SimulateSettings { Rounds = 3 };
        var origins = new SettingOrigins(settings, file: null);
        var config = RunConfig.EmbeddedDefault("sft");
        SimulateCommand.Apply(config, settings);
        string yaml = RunConfigPrinter.ToYaml(config, origins.Source);
        Assert.Contains("  rounds: 3  # --rounds", yaml);
        Assert.Contains("  clients: 5  # embedded default", yaml);
        Assert.Contains("fedadam: 0.01", yaml);
    }

    [Fact]
    public void Old_yaml_key_names_are_read_with_a_warning()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "federation:\n  evaluate_every: 3\ndata:\n  eval_path: held-out.json\n");
            var file = RunConfigFile.Load(path);
            Assert.Equal(3, file.Config.Federation.EvaluateEvery);
            Assert.Equal("held-out.json", file.Config.Data.EvalPath);
            Assert.Equal(2, file.Warnings.Count);
            Assert.Contains("federation.evaluate_every is the old name of federation.eval_every", file.Warnings[0]);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void The_federation_section_bound_directly_still_reads_the_old_key()
    {
        // server.yaml binds RunConfig.FederationSection with YamlDotNet, without run.yaml's reader.
        var deserializer = new YamlDotNet.Serialization.DeserializerBuilder()
            .WithNamingConvention(YamlDotNet.Serialization.NamingConventions.UnderscoredNamingConvention.Instance).Build();
        Assert.Equal(0, deserializer.Deserialize<RunConfig.FederationSection>("evaluate_every: 0\n").EvaluateEvery);
        Assert.Equal(3, deserializer.Deserialize<RunConfig.FederationSection>("eval_every: 3\n").EvaluateEvery);
    }

    [Theory]
    [InlineData("Rounds must be positive (Parameter 'Rounds')\nActual value was 0.", "Rounds must be positive")]
    [InlineData("Failed to convert 'abc' to Nullable`1.", "'abc' is not a valid value")]
    [InlineData("No node deserializer was able to deserialize the node into type System.Int32, System.Private.CoreLib, Version=10.0.0.0, Culture=neutral, PublicKeyToken=7cec85d7bea7798e",
        "No node deserializer was able to deserialize the node into type whole number")]
    [InlineData("probability tensor contains either `inf`, `nan` or element < 0\nException raised from multinomial at /pytorch/aten/src/ATen/native/Distributions.cpp:620 (most recent call first):\nframe #0: c10::Error::Error",
        "probability tensor contains either `inf`, `nan` or element < 0")]
    public void Scrub_removes_dotnet_and_libtorch_internals(string raw, string clean) =>
        Assert.Equal(clean, ErrorPresenter.Scrub(raw));

    [Fact]
    public void A_range_exception_from_the_library_is_one_clean_line()
    {
        var (lines, _, code) = ErrorPresenter.Describe(new ArgumentOutOfRangeException("Rounds", 0, "Rounds must be positive"));
        Assert.Equal(["Rounds must be positive"], lines);
        Assert.NotEqual(0, code);
    }
}
