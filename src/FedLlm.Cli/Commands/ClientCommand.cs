using FedLlm.Quantization;
using System.ComponentModel;
using FedLlm.Defaults;
using FedLlm.Network;
using FedLlm.Network.Client;
using FedLlm.Network.Security;
using FedLlm.Runtime;
using Microsoft.Extensions.Logging;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

public sealed class ClientSettings : CommandSettings
{
    [CommandOption("--server <URL>")][Description("https://HOST:PORT of the federation server (http:// only with --insecure)")] public string? Server { get; init; }

    [CommandOption("--config <FILE>")]
    [Description("client.yaml: client_id, model_path, base_dtype, data (path, template, dataset, skip_bad), state_dir, kit, auth (certificate or token), threads, task, lora_rank")]
    public string? Config { get; init; }

    [CommandOption("--insecure")][Description("Plain-text HTTP/2 to a server started with --insecure")] public bool Insecure { get; init; }

    /// <summary>Hidden, for tests: milliseconds of artificial pause per local step, so a client process plays a slow
    /// device (FedBuff's staleness over the network). Not shown in --help or docs/cli.md.</summary>
    [CommandOption("--test-step-delay <MS>", IsHidden = true)][Description("For tests: milliseconds of artificial pause per local step (a slow device)")] public double? TestStepDelay { get; init; }
}

/// <summary><c>fedllm client</c>: trains on this machine's data for a federation server, dialling out only. Exits 0 when
/// the run has finished, 2 when the server refuses this client for good (the reason is logged in one line).</summary>
public sealed class ClientCommand : Command<ClientSettings>
{
    public override int Execute(CommandContext context, ClientSettings s, CancellationToken cancellationToken)
    {
        if (s.Server is null) throw new ArgumentException("--server https://HOST:PORT is required");
        if (s.Config is null) throw new ArgumentException("--config client.yaml is required (see examples/federation/alice.yaml)");
        if (s.TestStepDelay is { } delay && !(delay >= 0 && double.IsFinite(delay)))
            throw new ArgumentException($"--test-step-delay must be a finite number of milliseconds ≥ 0, got {delay}");
        var config = ClientConfig.Load(s.Config);
        string clientId = config.ClientId ?? throw new ArgumentException($"{s.Config}: client_id is required");
        string dataPath = config.Data.Path ?? throw new ArgumentException($"{s.Config}: data.path is required (this client's own training data)");
        if (!File.Exists(dataPath)) throw new FileNotFoundException($"{s.Config}: data.path {dataPath} does not exist", dataPath);
        TorchRuntime.ConfigureThreads(config.Threads);
        using var loggers = FedLlmLogging.CreateFactory();
        var logger = loggers.CreateLogger("FedLlm.Client");
        string modelDir = config.ModelPath ?? EmbeddedDefault.Ensure(m => logger.LogInformation("{Message}", m)).ModelDirectory;
        var connection = ClientCredentialsLoader.Connect(s.Server, clientId, config.Kit, s.Insecure, s.Config, config.Auth);
        if (s.Insecure) logger.LogWarning("INSECURE: updates travel unencrypted to {Server}", s.Server);
        using var client = new NetworkClient(connection, new NetworkClientOptions
        {
            ModelDirectory = modelDir,
            BaseWeights = BaseWeights.Parse(config.BaseDtype, $"{s.Config}: base_dtype"),
            DataPath = dataPath,
            Template = config.Data.Template,
            Task = config.Task,
            Dataset = config.Data.Dataset,
            SkipBad = config.Data.SkipBad,
            StateDirectory = config.StateDir ?? Path.Combine("client-state", clientId),
            LoraRank = config.LoraRank is null or > 0 ? config.LoraRank
                : throw new ArgumentException($"{s.Config}: lora_rank must be a positive whole number, got {config.LoraRank}"),
            KillBeforeSecAggPhase = SecAggFault(Environment.GetEnvironmentVariable(SecAggFaultVariable)),
            StepDelay = TimeSpan.FromMilliseconds(s.TestStepDelay ?? 0),
        }, logger);
        return client.RunAsync(cancellationToken).GetAwaiter().GetResult();
    }

    /// <summary>Fault injection for drop-out tests (docs/secure-aggregation.md): the client kills itself before sending
    /// its message of this secure-aggregation phase.</summary>
    public const string SecAggFaultVariable = "FEDLLM_FAULT_SECAGG_KILL_BEFORE";

    static FedLlm.Federation.SecureAggregation.SecAggPhase? SecAggFault(string? value) => value switch
    {
        null or "" => null,
        "advertise-keys" => FedLlm.Federation.SecureAggregation.SecAggPhase.AdvertiseKeys,
        "share-keys" => FedLlm.Federation.SecureAggregation.SecAggPhase.ShareKeys,
        "masked-input" => FedLlm.Federation.SecureAggregation.SecAggPhase.MaskedInput,
        "unmask" => FedLlm.Federation.SecureAggregation.SecAggPhase.Unmask,
        _ => throw new ArgumentException($"{SecAggFaultVariable}={value}: use advertise-keys, share-keys, masked-input or unmask"),
    };
}
