using FedLlm.Evaluation.Judge;

namespace FedLlm.Tests.Evaluation.Judge;

public class JudgeConfigTests
{
    private static string Write(string yaml)
    {
        var path = Path.Combine(Path.GetTempPath(), $"fedllm-judge-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    [Fact]
    public void Loads_snake_case_keys_and_the_key_from_the_named_variable()
    {
        var variable = $"FEDLLM_TEST_KEY_{Guid.NewGuid():N}";
        Environment.SetEnvironmentVariable(variable, "sk-from-env");
        var path = Write($"base_url: http://127.0.0.1:9/v1\nmodel: gpt-4\napi_key_env: {variable}\nmax_tokens: 512\ntimeout_seconds: 30\nparallel: 3\n");
        try
        {
            var config = JudgeConfig.Load(path);
            Assert.Equal("gpt-4", config.Model);
            Assert.Equal(512, config.MaxTokens);
            Assert.Equal(3, config.Parallel);
            Assert.Equal("sk-from-env", config.ResolveApiKey());
        }
        finally
        {
            File.Delete(path);
            Environment.SetEnvironmentVariable(variable, null);
        }
    }

    [Fact]
    public void Unknown_keys_missing_settings_and_unset_variables_are_errors_naming_the_file()
    {
        var unknown = Write("base_url: http://x/v1\nmodel: gpt-4\nmax_token: 10\n");
        var incomplete = Write("base_url: not a url\n");
        var unset = Write("base_url: http://x/v1\nmodel: gpt-4\napi_key_env: FEDLLM_TEST_SURELY_UNSET_VARIABLE\n");
        try
        {
            var error = Assert.Throws<InvalidDataException>(() => JudgeConfig.Load(unknown));
            Assert.Contains(unknown, error.Message);
            Assert.Contains("line 3", error.Message);
            Assert.Contains("max_token", error.Message);

            error = Assert.Throws<InvalidDataException>(() => JudgeConfig.Load(incomplete));
            Assert.Contains("'not a url' is not an http(s) URL", error.Message);
            Assert.Contains("model is required", error.Message);

            error = Assert.Throws<InvalidDataException>(() => JudgeConfig.Load(unset).ResolveApiKey());
            Assert.Contains("FEDLLM_TEST_SURELY_UNSET_VARIABLE", error.Message);
            Assert.Contains(unset, error.Message);
        }
        finally
        {
            File.Delete(unknown);
            File.Delete(incomplete);
            File.Delete(unset);
        }
    }
}
