using FedLlm.Runs;
using FedLlm.Federation.Transfer;
using FedLlm.Federation.Validation;
using FedLlm.Network.Server;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace FedLlm.Network;

/// <summary>
/// server.yaml (snake_case): the task, federation, strategy, lora, dpo and evaluation sections of run.yaml, a model
/// section without training settings, a data section with held-out data only (the clients hold the training data), and a
/// <c>server</c> section for the network. The roster fixes the clients: federation.clients is its size. Keys of run.yaml
/// that mean nothing to a server (data.path, data.partition, model.activation_checkpointing …) are refused as unknown.
/// </summary>
public sealed class ServerConfig
{
    /// <summary>sft or dpo; the clients' data must be of the same kind.</summary>
    public string Task { get; set; } = "sft";
    public ServerModelSection Model { get; set; } = new();
    public ServerDataSection Data { get; set; } = new();
    public RunConfig.FederationSection Federation { get; set; } = new();
    public RunConfig.StrategySection Strategy { get; set; } = new();
    public RunConfig.LoraSection Lora { get; set; } = new();
    public RunConfig.DpoSection Dpo { get; set; } = new();
    public RunConfig.EvaluationSection Evaluation { get; set; } = new();
    public ServerSection Server { get; set; } = new();

    /// <summary>Client-level differential privacy (as run.yaml's; noise seeded cryptographically unless privacy.seeding says run-seed).</summary>
    public RunConfig.PrivacySection? Privacy { get; set; }

    /// <summary>Byzantine-robust aggregation (as run.yaml's; fltrust needs robust.root_data on a server).</summary>
    public RunConfig.RobustSection? Robust { get; set; }

    /// <summary>Read only to refuse it with a clear message: buffered asynchronous aggregation runs in simulate only.</summary>
    public RunConfig.AsyncSection? Async { get; set; }
    public string? Output { get; set; }
    public int? Threads { get; set; }

    public sealed class ServerModelSection
    {
        /// <summary>Checkpoint folder; null = the embedded default (the clients must use it too).</summary>
        public string? Path { get; set; }

        /// <summary>How the server stores the frozen base for held-out evaluation: fp32, bf16, int8 or nf4.</summary>
        public string BaseDtype { get; set; } = "fp32";
    }

    /// <summary>Held-out data the server scores the global adapter on (the training data stays with the clients).</summary>
    public sealed class ServerDataSection
    {
        public string? EvalPath { get; set; }
        public int? EvalLimit { get; set; }
        public string Template { get; set; } = "alpaca";

        /// <summary>Schema of the held-out file (alpaca; generic-preference, ultrafeedback, hh-rlhf for dpo).</summary>
        public string? Dataset { get; set; }
    }

    /// <summary>The run as the library models it; the roster's size is the number of clients.</summary>
    /// <exception cref="ArgumentException">Exactly one algorithm is required; a DPO reference adapter is not supported over the network yet.</exception>
    public RunOptions ToRunOptions()
    {
        if (Strategy.Algorithms.Count != 1 || Strategy.Algorithms[0] == "all")
            throw new ArgumentException($"strategy.algorithms lists {string.Join(", ", Strategy.Algorithms)}; a server runs exactly one algorithm");
        if (Async is not null || Strategy.Algorithms.Contains(FedLlm.Federation.Async.BufferedAsyncServer.AlgorithmName))
            throw new ArgumentException("async / fedbuff: buffered asynchronous aggregation runs in `fedllm simulate` only (virtual client speeds); the network server aggregates per round with a deadline. Remove the async: section from server.yaml (docs/unequal-participants.md)");
        if (Dpo.ReferenceAdapter is not null)
            throw new ArgumentException("dpo.reference_adapter: a reference adapter is not supported by the network federation yet (clients would need it too); use simulate, or the base model as reference");
        if (Federation.Clients is { } clients && clients != Server.Roster.Count)
            throw new ArgumentException($"federation.clients is {clients} but server.roster lists {Server.Roster.Count}; the roster fixes the clients (leave federation.clients out)");
        var run = new RunConfig
        {
            Task = Task,
            Model = new RunConfig.ModelSection { Path = Model.Path, BaseDtype = Model.BaseDtype },
            Data = new RunConfig.DataSection { EvalPath = Data.EvalPath, EvalLimit = Data.EvalLimit, Template = Data.Template, Dataset = Data.Dataset },
            Federation = Federation,
            Strategy = Strategy,
            Lora = Lora,
            Dpo = Dpo,
            Evaluation = Evaluation,
            Threads = Threads,
            Privacy = Privacy,
            Robust = Robust,
        };
        run.Federation.Clients = Server.Roster.Count;
        return run.ToRunOptions(Output ?? System.IO.Path.Combine("runs", "federation"));
    }

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

        /// <summary>Refuse an update whose norm exceeds this multiple of the round's median update norm (at least 3 updates).</summary>
        public double? MaxUpdateNormRatio { get; set; }

        /// <summary>The most examples any client's update may claim; each client is bounded by what it declared at join
        /// in any case (FedAvg weights updates by this count).</summary>
        public long? MaxExampleCount { get; set; }

        /// <summary>Decoded bytes all uploads in flight may hold together; later uploads are told to retry.</summary>
        public long UploadMemoryBudgetBytes { get; set; } = 8L << 30;

        /// <summary>A client refused k times in a row gets no task for this × 2^(k−1) seconds.</summary>
        public double RefusalBackoffSeconds { get; set; } = 5;

        /// <summary>On SIGTERM/SIGINT or `fedllm admin stop`: how long the open round may take to finish before it is abandoned.</summary>
        public double StopGraceSeconds { get; set; } = 60;

        /// <summary>HOST:PORT for Prometheus metrics over plain HTTP (/metrics); null = off.</summary>
        public string? MetricsListen { get; set; }

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
            MaxUpdateNormRatio = MaxUpdateNormRatio,
            UploadMemoryBudget = UploadMemoryBudgetBytes,
            RefusalBackoff = TimeSpan.FromSeconds(RefusalBackoffSeconds),
            StopGrace = TimeSpan.FromSeconds(StopGraceSeconds),
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

    /// <summary>certificate (mutual TLS) or token (the kit's token and ca.crt only); unset = certificate when the kit has
    /// client.crt, else token.</summary>
    public string? Auth { get; set; }
    public int? Threads { get; set; }

    /// <summary>sft (instruction examples, the default) or dpo (preference pairs); must be the server's task.</summary>
    public string Task { get; set; } = "sft";

    public sealed class ClientDataSection
    {
        public string? Path { get; set; }
        public string Template { get; set; } = "alpaca";

        /// <summary>The file's schema: alpaca (sft); generic-preference, ultrafeedback, hh-rlhf (dpo).</summary>
        public string? Dataset { get; set; }
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
