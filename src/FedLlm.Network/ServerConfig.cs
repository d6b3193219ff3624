using FedLlm.Federation.Simulation;
using FedLlm.Federation.Transfer;
using FedLlm.Federation.Validation;
using FedLlm.Network.Server;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace FedLlm.Network;

/// <summary>
/// server.yaml (snake_case): the model, data (held-out evaluation only), federation, strategy and lora sections of
/// run.yaml, plus a <c>server</c> section for the network. The roster fixes the clients: federation.clients is its size.
/// </summary>
public sealed class ServerConfig
{
    public SimulationConfig.ModelSection Model { get; set; } = new();
    public SimulationConfig.DataSection Data { get; set; } = new();
    public SimulationConfig.FederationSection Federation { get; set; } = new();
    public SimulationConfig.StrategySection Strategy { get; set; } = new();
    public SimulationConfig.LoraSection Lora { get; set; } = new();
    public ServerSection Server { get; set; } = new();
    public string? Output { get; set; }
    public int? Threads { get; set; }

    public sealed class ServerSection
    {
        /// <summary>HOST:PORT to listen on; port 0 picks a free one (printed at start).</summary>
        public string Listen { get; set; } = "0.0.0.0:50443";
        public List<string> Roster { get; set; } = new();
        public double RoundDeadlineSeconds { get; set; } = 600;
        public int MinUpdates { get; set; } = 1;
        public double HeartbeatSeconds { get; set; } = 5;
        public double HeartbeatTimeoutSeconds { get; set; } = 20;
        public long MaxUpdateBytes { get; set; } = 4L << 30;
        public double? MaxUpdateNorm { get; set; }
        public long? MaxExampleCount { get; set; }

        /// <summary>Transfer encoding both ways: fp32, bf16, fp16, int8 (blockwise), each optionally +gzip.</summary>
        public string Encoding { get; set; } = "fp32";

        /// <summary>The server/ folder of a provisioning kit (`fedllm certs`): server.crt, server.key, ca.crt, token hashes.</summary>
        public string? Kit { get; set; }

        /// <summary>How clients prove who they are: certificate (mutual TLS) or token.</summary>
        public string Auth { get; set; } = "certificate";

        /// <summary>Plain-text h2c without authentication; honoured only together with the --insecure flag.</summary>
        public bool Insecure { get; set; }

        public RemoteClientsOptions ToOptions() => new()
        {
            Roster = Roster,
            RoundDeadline = TimeSpan.FromSeconds(RoundDeadlineSeconds),
            MinUpdates = MinUpdates,
            HeartbeatInterval = TimeSpan.FromSeconds(HeartbeatSeconds),
            HeartbeatTimeout = TimeSpan.FromSeconds(HeartbeatTimeoutSeconds),
            MaxUpdateBytes = MaxUpdateBytes,
            Limits = new UpdateLimits { MaxUpdateNorm = MaxUpdateNorm, MaxExampleCount = MaxExampleCount ?? long.MaxValue },
            Encoding = ParseEncoding(Encoding),
        };
    }

    static TransferEncoding ParseEncoding(string text)
    {
        try
        {
            return TransferEncoding.Parse(text);
        }
        catch (FormatException e)
        {
            throw new ArgumentException($"server.encoding: {e.Message}", e);
        }
    }

    /// <summary>Reads server.yaml; an unknown key or a wrong type is an error naming the file, line and key.</summary>
    public static ServerConfig Load(string path) => Yaml.Load<ServerConfig>(path);
}

/// <summary>client.yaml (snake_case): who the client is, its own data and model, where it keeps state and credentials.</summary>
public sealed class ClientConfig
{
    public string? ClientId { get; set; }

    /// <summary>Base model folder; null = the embedded default (which the server must use too).</summary>
    public string? ModelPath { get; set; }

    /// <summary>How this client stores its frozen base: fp32, bf16, int8 or nf4. Each client picks what its hardware
    /// holds; adapters travel and train in fp32 whatever the base, so clients of different precisions federate.</summary>
    public string BaseDtype { get; set; } = "fp32";
    public ClientDataSection Data { get; set; } = new();

    /// <summary>Where the client keeps SCAFFOLD's c_i and optimizer moments between rounds.</summary>
    public string? StateDir { get; set; }

    /// <summary>The client-{id}/ folder of a provisioning kit: client.crt, client.key, ca.crt, token.</summary>
    public string? Kit { get; set; }
    public int? Threads { get; set; }

    public sealed class ClientDataSection
    {
        public string? Path { get; set; }
        public string Template { get; set; } = "alpaca";
        public bool SkipBad { get; set; }
    }

    public static ClientConfig Load(string path) => Yaml.Load<ClientConfig>(path);
}

static class Yaml
{
    public static T Load<T>(string path) where T : new()
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: config file not found", path);
        var deserializer = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build();
        try
        {
            return deserializer.Deserialize<T>(File.ReadAllText(path)) ?? new T();
        }
        catch (YamlException e)
        {
            string detail = e.InnerException?.Message ?? e.Message;
            throw new InvalidDataException($"{path}: line {e.Start.Line}, column {e.Start.Column}: {detail}", e);
        }
    }
}
