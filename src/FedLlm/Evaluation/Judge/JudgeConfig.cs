using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace FedLlm.Evaluation.Judge;

/// <summary>
/// The LLM judge as written in judge.yaml (snake_case keys): any OpenAI-compatible chat-completions endpoint.
/// </summary>
/// <example>
/// <code>
/// base_url: https://api.openai.com/v1
/// model: gpt-4
/// api_key_env: OPENAI_API_KEY
/// parallel: 4
/// </code>
/// </example>
public sealed class JudgeConfig
{
    /// <summary>The API root; requests go to <c>{base_url}/chat/completions</c>.</summary>
    public string? BaseUrl { get; set; }

    /// <summary>The judge model's name as the endpoint knows it (FastChat's MT-Bench numbers use gpt-4).</summary>
    public string? Model { get; set; }

    /// <summary>The key itself (prefer <see cref="ApiKeyEnv"/>, which keeps it out of files).</summary>
    public string? ApiKey { get; set; }

    /// <summary>The name of the environment variable holding the key.</summary>
    public string? ApiKeyEnv { get; set; }

    /// <summary>The judgment's token budget (FastChat: 2048).</summary>
    public int MaxTokens { get; set; } = 2048;

    /// <summary>Per request, before it counts as failed and is retried.</summary>
    public double TimeoutSeconds { get; set; } = 120;

    /// <summary>Concurrent judge requests.</summary>
    public int Parallel { get; set; } = 1;

    /// <summary>Retries after a 429, a 5xx, a timeout or a dropped connection.</summary>
    public int MaxRetries { get; set; } = 6;

    /// <summary>The first retry's wait; it doubles on each retry (capped at 60 s) unless the server sends Retry-After.</summary>
    public double RetryDelaySeconds { get; set; } = 2;

    /// <summary>Where this config was read from, for error messages.</summary>
    [YamlIgnore]
    public string Source { get; set; } = "judge config";

    /// <summary>Reads judge.yaml; an unknown key or a value of the wrong type is an error naming the file, line and key.</summary>
    /// <exception cref="InvalidDataException">The file is malformed or a setting is invalid.</exception>
    public static JudgeConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: judge config file not found", path);
        var deserializer = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build();
        JudgeConfig config;
        try
        {
            config = deserializer.Deserialize<JudgeConfig>(File.ReadAllText(path)) ?? new JudgeConfig();
        }
        catch (YamlException e)
        {
            string detail = e.InnerException?.Message ?? e.Message;
            throw new InvalidDataException($"{path}: line {e.Start.Line}, column {e.Start.Column}: {detail}", e);
        }

        config.Source = path;
        config.Validate();
        return config;
    }

    /// <exception cref="InvalidDataException">A required key is missing or a value is out of range.</exception>
    public void Validate()
    {
        var problems = new List<string>();
        if (string.IsNullOrWhiteSpace(BaseUrl)) problems.Add("base_url is required (e.g. https://api.openai.com/v1)");
        else if (!Uri.TryCreate(BaseUrl, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            problems.Add($"base_url '{BaseUrl}' is not an http(s) URL");
        if (string.IsNullOrWhiteSpace(Model)) problems.Add("model is required (the judge model's name, e.g. gpt-4)");
        if (ApiKey is not null && ApiKeyEnv is not null) problems.Add("give api_key or api_key_env, not both");
        if (MaxTokens <= 0) problems.Add($"max_tokens must be positive, got {MaxTokens}");
        if (TimeoutSeconds <= 0) problems.Add($"timeout_seconds must be positive, got {TimeoutSeconds}");
        if (Parallel <= 0) problems.Add($"parallel must be positive, got {Parallel}");
        if (MaxRetries < 0) problems.Add($"max_retries must be ≥ 0, got {MaxRetries}");
        if (RetryDelaySeconds < 0) problems.Add($"retry_delay_seconds must be ≥ 0, got {RetryDelaySeconds}");
        if (problems.Count > 0) throw new InvalidDataException($"{Source}: {string.Join("; ", problems)}.");
    }

    /// <summary>The key to send: <see cref="ApiKey"/>, or the variable <see cref="ApiKeyEnv"/> names; null = no Authorization header (local servers).</summary>
    /// <exception cref="InvalidDataException">The named variable is not set.</exception>
    public string? ResolveApiKey()
    {
        if (ApiKey is not null) return ApiKey;
        if (ApiKeyEnv is null) return null;
        var value = Environment.GetEnvironmentVariable(ApiKeyEnv);
        return string.IsNullOrEmpty(value)
            ? throw new InvalidDataException($"{Source}: api_key_env names the environment variable '{ApiKeyEnv}', which is not set.")
            : value;
    }
}
