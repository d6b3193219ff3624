using FedLlm.Runs;
using FedLlm.Federation.Simulation;

namespace FedLlm.Tests.Federation;

public class RunConfigTests
{
    static string Write(string yaml)
    {
        string path = Path.Combine(Directory.CreateTempSubdirectory().FullName, "run.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    [Fact]
    public void Reads_every_section_with_snake_case_keys_and_keeps_defaults_elsewhere()
    {
        var config = RunConfig.Load(Write("""
            model:
              path: /models/smol
            data:
              partition: iid
              alpha: 0.1
            federation:
              rounds: 7
              clients_per_round: 3
              learning_rate: 0.0002
              keep_optimizer_state: true
            strategy:
              algorithms: [fedprox, scaffold]
              proximal_mu: 0.05
              openfedllm_compatible: true
            lora:
              r: 4
            baselines: [local]
            """));
        Assert.Equal("/models/smol", config.Model.Path);
        Assert.Equal("iid", config.Data.Partition);
        Assert.Equal(0.1, config.Data.Alpha);
        var options = config.Federation.ToOptions();
        Assert.Equal(7, options.Rounds);
        Assert.Equal(3, options.ClientsPerRound);
        Assert.Equal(2e-4, options.LearningRate);
        Assert.True(options.KeepClientOptimizerState);
        Assert.Equal(20, options.TotalClients);       // OpenFedLLM's default, untouched
        Assert.Equal(10, options.LocalSteps);
        Assert.Equal(new[] { "fedprox", "scaffold" }, config.ResolvedAlgorithms());
        Assert.Equal(0.05, config.Strategy.ProximalMu);
        Assert.True(config.Strategy.OpenfedllmCompatible);
        Assert.Equal(4, config.Lora.R);
        Assert.Equal(64, config.Lora.ToOptions().Alpha); // SFT default alpha with a given rank
        Assert.Equal(new[] { "local" }, config.Baselines);
    }

    [Fact]
    public void An_unknown_key_is_an_error_naming_the_file_line_and_key()
    {
        string path = Write("federation:\n  rounds: 3\n  local_stepz: 5\n");
        var e = Assert.Throws<FedLlm.Configuration.ConfigurationException>(() => RunConfig.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("line 3", e.Message);
        Assert.Contains("local_stepz", e.Message);
    }

    [Fact]
    public void A_value_of_the_wrong_type_is_an_error_naming_the_file_and_line()
    {
        string path = Write("federation:\n  rounds: many\n");
        var e = Assert.Throws<FedLlm.Configuration.ConfigurationException>(() => RunConfig.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("line 2", e.Message);
        Assert.Contains("many", e.Message);
    }

    [Fact]
    public void All_expands_to_the_seven_algorithms()
    {
        var config = RunConfig.Load(Write("strategy:\n  algorithms: [all]\n"));
        Assert.Equal(7, config.ResolvedAlgorithms().Count);
    }

    [Fact]
    public void Reads_the_DPO_task_with_its_data_schema_beta_and_reference_adapter()
    {
        var config = RunConfig.Load(Write("""
            task: dpo
            data:
              dataset: ultrafeedback
              path: /data/uf.parquet
            dpo:
              beta: 0.25
              reference_adapter: /runs/sft/adapter
            """));
        Assert.Equal("dpo", config.Task);
        Assert.Equal("ultrafeedback", config.Data.Dataset);
        Assert.Equal(0.25, config.Dpo.Beta);
        Assert.Equal("/runs/sft/adapter", config.Dpo.ReferenceAdapter);
        Assert.Equal("sft", RunConfig.Load(Write("federation:\n  rounds: 2\n")).Task);
        Assert.Equal(0.1, RunConfig.Load(Write("federation:\n  rounds: 2\n")).Dpo.Beta); // TRL's and OpenFedLLM's β
        // Keys left out take run_dpo.sh's values for DPO and run_sft.sh's for SFT; keys given win for both.
        var dpo = config.Federation.ToOptions(config.Task);
        Assert.Equal((5, 5e-4, 1e-5), (dpo.TotalClients, dpo.LearningRate, dpo.MinLearningRate));
        Assert.Equal((8, 16.0), (config.Lora.ToOptions("dpo").Rank, config.Lora.ToOptions("dpo").Alpha));
        var sft = new RunConfig().Federation.ToOptions("sft");
        Assert.Equal((20, 5e-5, 1e-6), (sft.TotalClients, sft.LearningRate, sft.MinLearningRate));
        Assert.Equal(32, new RunConfig().Lora.ToOptions().Rank);
        var given = RunConfig.Load(Write("task: dpo\nfederation:\n  clients: 7\n  learning_rate: 0.001\nlora:\n  r: 4\n"));
        Assert.Equal((7, 1e-3, 1e-5), (given.Federation.ToOptions(given.Task).TotalClients, given.Federation.ToOptions(given.Task).LearningRate,
            given.Federation.ToOptions(given.Task).MinLearningRate));
        Assert.Equal((4, 16.0), (given.Lora.ToOptions("dpo").Rank, given.Lora.ToOptions("dpo").Alpha));
        Assert.Throws<ArgumentException>(() => new RunConfig().Federation.ToOptions("rlhf"));
    }

    [Fact]
    public void Per_algorithm_server_learning_rates_win_over_the_shared_one_and_unknown_names_are_refused()
    {
        var config = RunConfig.Load(Write("""
            strategy:
              algorithms: [fedavgm, fedadam, fedyogi]
              server_learning_rate: 0.5
              server_learning_rates:
                fedadam: 0.01
            """));
        Assert.Equal(0.01, config.Strategy.ToOptions("fedadam", 10).ServerLearningRate);
        Assert.Equal(0.5, config.Strategy.ToOptions("fedyogi", 10).ServerLearningRate);
        Assert.Equal(0.5, config.Strategy.ToOptions("fedavgm", 10).ServerLearningRate);
        Assert.Equal(10, config.Strategy.ToOptions("fedavgm", 10).TotalClients);
        Assert.Null(new RunConfig().Strategy.ToOptions("fedadam", 2).ServerLearningRate); // the algorithm's own default

        var typo = RunConfig.Load(Write("strategy:\n  server_learning_rates:\n    fedadm: 0.01\n"));
        var error = Assert.Throws<ArgumentException>(() => typo.Strategy.ToOptions("fedadam", 2));
        Assert.Contains("fedadm", error.Message);
    }

    [Fact]
    public void Reads_the_base_dtype_and_activation_checkpointing_and_names_a_bad_dtype()
    {
        var config = RunConfig.Load(Write("""
            model:
              base_dtype: nf4
              activation_checkpointing: true
            """));
        Assert.Equal("nf4", config.Model.BaseDtype);
        Assert.True(config.Model.ActivationCheckpointing);
        Assert.Equal("fp32", RunConfig.Load(Write("model:\n  path: x\n")).Model.BaseDtype);

        string bad = Write("model:\n  base_dtype: int4\n");
        var file = RunConfigFile.Load(bad);
        var e = Assert.Throws<FedLlm.Configuration.ConfigurationException>(() => RunConfigValidator.Validate(file.Config, p => file.Describe(p) ?? p));
        Assert.Contains($"{bad} line 2 (model.base_dtype): 'int4' is not one of fp32, bf16, int8, nf4", e.Message);
    }
}
