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
    /// <summary>The base model the clients train adapters on, and how the server stores it.</summary>
    public ServerModelSection Model { get; set; } = new();
    /// <summary>Held-out data the server evaluates the global adapter on.</summary>
    public ServerDataSection Data { get; set; } = new();
    /// <summary>Rounds, clients per round and local training (as run.yaml's; the number of clients is the roster's
    /// size).</summary>
    public RunConfig.FederationSection Federation { get; set; } = new();
    /// <summary>The federated algorithm and its settings (as run.yaml's).</summary>
    public RunConfig.StrategySection Strategy { get; set; } = new();
    /// <summary>LoRA rank, alpha, dropout and target modules (as run.yaml's).</summary>
    public RunConfig.LoraSection Lora { get; set; } = new();
    /// <summary>DPO beta and label smoothing when the task is dpo (as run.yaml's).</summary>
    public RunConfig.DpoSection Dpo { get; set; } = new();
    /// <summary>How often and how much the server evaluates (as run.yaml's).</summary>
    public RunConfig.EvaluationSection Evaluation { get; set; } = new();
    /// <summary>Networking: listen address, roster, deadlines, update bounds and credentials.</summary>
    public ServerSection Server { get; set; } = new();

    /// <summary>Client-level differential privacy (as run.yaml's; noise seeded cryptographically unless privacy.seeding says run-seed).</summary>
    public RunConfig.PrivacySection? Privacy { get; set; }

    /// <summary>Byzantine-robust aggregation (as run.yaml's; fltrust needs robust.root_data on a server).</summary>
    public RunConfig.RobustSection? Robust { get; set; }

    /// <summary>Secure aggregation (as run.yaml's): the clients mask their updates and the server unmasks only their sum,
    /// over the SecAggExchange (docs/secure-aggregation.md).</summary>
    public RunConfig.SecureAggregationSection? SecureAggregation { get; set; }

    /// <summary>Buffered asynchronous aggregation (FedBuff): the server runs fedbuff, with no round barrier (buffer_size,
    /// staleness, staleness_exponent, hinge_slope, hinge_cutoff, server_learning_rate, max_staleness; the simulated speeds
    /// and concurrency are refused).</summary>
    public RunConfig.AsyncSection? Async { get; set; }
    /// <summary>Per-client evaluation of personalisation (as run.yaml's): each client scores the global and its
    /// personal adapter on its own held-out split (data.client_eval_fraction) after the last round and every
    /// federation.federated_evaluate_every rounds; finetune_steps and local_only are simulate-only and refused.</summary>
    public RunConfig.PersonalizationSection? Personalization { get; set; }

    /// <summary>The run folder (checkpoints, metrics, adapters); null = runs/federation.</summary>
    public string? Output { get; set; }
    /// <summary>Intra-op threads for libtorch; null = all cores.</summary>
    public int? Threads { get; set; }

    /// <summary>server.yaml's model section.</summary>
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
        /// <summary>The held-out file; null = no held-out evaluation.</summary>
        public string? EvalPath { get; set; }
        /// <summary>Use at most this many held-out examples; null = all.</summary>
        public int? EvalLimit { get; set; }
        /// <summary>Prompt template of the held-out examples (as the clients' data).</summary>
        public string Template { get; set; } = "alpaca";

        /// <summary>Schema of the held-out file (alpaca; generic-preference, ultrafeedback, hh-rlhf for dpo).</summary>
        public string? Dataset { get; set; }

        /// <summary>The share of each client's own data it holds out (seeded as in simulate, never trained on) to score
        /// the global and its personal adapter on; 0 = none. Needs a personalization: section.</summary>
        public double ClientEvalFraction { get; set; }
    }

    const string FedBuff = FedLlm.Federation.Async.BufferedAsyncServer.AlgorithmName;

    /// <summary>Whether the server aggregates asynchronously (FedBuff): an async: section, or strategy.algorithms [fedbuff].</summary>
    public bool IsAsynchronous => Async is not null || Strategy.Algorithms.Contains(FedBuff);

    /// <summary>The run as the library models it; the roster's size is the number of clients.</summary>
    /// <exception cref="ArgumentException">Exactly one algorithm is required; a DPO reference adapter is not supported over the network yet.</exception>
    public RunOptions ToRunOptions()
    {
        if (Strategy.Algorithms.Count != 1 || Strategy.Algorithms[0] == "all")
            throw new ArgumentException($"strategy.algorithms lists {string.Join(", ", Strategy.Algorithms)}; a server runs exactly one algorithm");
        var strategy = Strategy;
        if (IsAsynchronous)
        {
            if (Async is { Enabled: false })
                throw new ArgumentException("async.enabled is false: on a server the async: section means FedBuff; remove the section to run strategy.algorithms per round");
            if (Async is { } a && (a.ClientSpeeds.Count > 0 || a.SlowClients > 0 || a.Concurrency is not null))
                throw new ArgumentException("async.client_speeds, async.slow_clients and async.concurrency simulate client speeds in `fedllm simulate`; a server's clients run at their own speed and every idle one trains. Remove them from server.yaml");
            if (Async?.BufferSize is { } k && k > Server.Roster.Count)
                throw new ArgumentException($"async.buffer_size {k} exceeds the {Server.Roster.Count} clients of server.roster: a client trains each version once, so a version could never fill its buffer");
            if (Server.MinUpdates is { } minUpdates)
                throw new ArgumentException($"server.min_updates {minUpdates} with async: FedBuff has no rounds to fill; async.buffer_size is how many updates each aggregation takes. Remove server.min_updates");
            if (Strategy.Algorithms is not ([FedBuff] or ["fedavg"]))
                throw new ArgumentException($"strategy.algorithms lists {string.Join(", ", Strategy.Algorithms)}, but with async: the server runs {FedBuff}; leave strategy.algorithms out or set it to [{FedBuff}]");
            strategy = new RunConfig.StrategySection { Algorithms = new() { FedBuff } };
        }
        if (Dpo.ReferenceAdapter is not null)
            throw new ArgumentException("dpo.reference_adapter: a reference adapter is not supported by the network federation yet (clients would need it too); use simulate, or the base model as reference");
        if (SecureAggregation is { Enabled: true } && (Server.MaxUpdateNorm is not null || Server.MaxUpdateNormRatio is not null))
            throw new ArgumentException($"server.{(Server.MaxUpdateNorm is not null ? "max_update_norm" : "max_update_norm_ratio")} with secure_aggregation: the server never sees an update to measure its norm; remove the bound (clients clip with privacy.mode client-fixed, and secure_aggregation.quantisation_range clips each coordinate)");
        if (Personalization is { } personal)
        {
            if (personal.FinetuneSteps > 0)
                throw new ArgumentException("personalization.finetune_steps: local fine-tuning after the federation runs in `fedllm simulate` only; a network client scores the global and its personal adapter. Set it to 0 or use simulate");
            if (personal.LocalOnly)
                throw new ArgumentException("personalization.local_only: training each client alone runs in `fedllm simulate` only. Set it to false or use simulate");
            if (IsAsynchronous)
                throw new ArgumentException("personalization with async: FedBuff has no rounds to evaluate after; drop one of them");
        }
        else if (Federation.FederatedEvaluateEvery > 0)
            throw new ArgumentException("federation.federated_evaluate_every: network clients score only their own held-out split, which per-client evaluation sets up; add data.client_eval_fraction and a personalization: section, or remove it");
        else if (Data.ClientEvalFraction > 0)
            throw new ArgumentException("data.client_eval_fraction without a personalization: section: the held-out split is only used by per-client evaluation; add personalization: {} or remove the fraction");
        if (Federation.Clients is { } clients && clients != Server.Roster.Count)
            throw new ArgumentException($"federation.clients is {clients} but server.roster lists {Server.Roster.Count}; the roster fixes the clients (leave federation.clients out)");
        var run = new RunConfig
        {
            Task = Task,
            Model = new RunConfig.ModelSection { Path = Model.Path, BaseDtype = Model.BaseDtype },
            Data = new RunConfig.DataSection
            {
                EvalPath = Data.EvalPath, EvalLimit = Data.EvalLimit, Template = Data.Template, Dataset = Data.Dataset, ClientEvalFraction = Data.ClientEvalFraction,
            },
            Federation = Federation,
            Strategy = strategy,
            Lora = Lora,
            Dpo = Dpo,
            Evaluation = Evaluation,
            Threads = Threads,
            Privacy = Privacy,
            Robust = Robust,
            SecureAggregation = SecureAggregation,
            Async = Async,
            Personalization = Personalization,
        };
        run.Federation.Clients = Server.Roster.Count;
        return run.ToRunOptions(Output ?? System.IO.Path.Combine("runs", "federation"));
    }

    /// <summary>server.yaml's server section: how the server listens, whom it admits and how it screens
    /// updates.</summary>
    public sealed class ServerSection
    {
        /// <summary>HOST:PORT to listen on; port 0 picks a free one (printed at start).</summary>
        public string Listen { get; set; } = "0.0.0.0:50443";
        /// <summary>The client ids allowed to join, in order; a client's index in it fixes its sampling and dropout
        /// seeds.</summary>
        public List<string> Roster { get; set; } = new();
        /// <summary>How long a round waits for updates (seconds) before it closes with what it has.</summary>
        public double RoundDeadlineSeconds { get; set; } = 600;
        /// <summary>Fewest updates a round aggregates; below it the round waits for clients to rejoin. Unset = 1; refused
        /// with FedBuff, which has no rounds (async.buffer_size says how many updates an aggregation takes).</summary>
        public int? MinUpdates { get; set; }
        /// <summary>How often clients send heartbeats, in seconds.</summary>
        public double HeartbeatSeconds { get; set; } = 5;
        /// <summary>Seconds of silence after which a client is left out of the open round; must exceed the heartbeat
        /// interval.</summary>
        public double HeartbeatTimeoutSeconds { get; set; } = 20;
        /// <summary>Largest update the server reads, in wire bytes (default 4 GiB).</summary>
        public long MaxUpdateBytes { get; set; } = 4L << 30;
        /// <summary>Refuse an update whose L2 norm ‖y_i − x‖ exceeds this; null = no bound.</summary>
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

        /// <summary>Also take transfers over the bulk channel on the same port (TLS ALPN fedllm-bulk/2): tensor bytes
        /// raw instead of inside gRPC messages. Off only where something between clients and server passes nothing but
        /// gRPC (a gRPC-aware proxy); clients then use the RPCs.</summary>
        public bool BulkTransfer { get; set; } = true;

        /// <summary>Transfer encoding both ways: fp32, bf16, fp16, int8 (blockwise), each optionally +gzip.</summary>
        public string Encoding { get; set; } = "fp32";

        /// <summary>The server/ folder of a provisioning kit (`fedllm certs`): server.crt, server.key, ca.crt, token hashes.</summary>
        public string? Kit { get; set; }

        /// <summary>How clients prove who they are: certificate (mutual TLS) or token.</summary>
        public string Auth { get; set; } = "certificate";

        /// <summary>Plain-text h2c without authentication; honoured only together with the --insecure flag.</summary>
        public bool Insecure { get; set; }

        /// <summary>The options of <see cref="RemoteClients"/>, with seconds turned into time spans and the encoding
        /// parsed.</summary>
        public RemoteClientsOptions ToOptions() => new()
        {
            Roster = Roster,
            RoundDeadline = TimeSpan.FromSeconds(RoundDeadlineSeconds),
            MinUpdates = MinUpdates ?? 1,
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
    /// <summary>This client's id; must be in the server's roster and match its kit.</summary>
    public string? ClientId { get; set; }

    /// <summary>Base model folder; null = the embedded default (which the server must use too).</summary>
    public string? ModelPath { get; set; }

    /// <summary>How this client stores its frozen base: fp32, bf16, int8 or nf4. Each client picks what its hardware
    /// holds; adapters travel and train in fp32 whatever the base, so clients of different precisions federate.</summary>
    public string BaseDtype { get; set; } = "fp32";
    /// <summary>The client's own data.</summary>
    public ClientDataSection Data { get; set; } = new();

    /// <summary>Where the client keeps SCAFFOLD's c_i and optimizer moments between rounds.</summary>
    public string? StateDir { get; set; }

    /// <summary>The client-{id}/ folder of a provisioning kit: client.crt, client.key, ca.crt, token.</summary>
    public string? Kit { get; set; }

    /// <summary>certificate (mutual TLS) or token (the kit's token and ca.crt only); unset = certificate when the kit has
    /// client.crt, else token.</summary>
    public string? Auth { get; set; }
    /// <summary>Intra-op threads for libtorch; null = all cores.</summary>
    public int? Threads { get; set; }

    /// <summary>sft (instruction examples, the default) or dpo (preference pairs); must be the server's task.</summary>
    public string Task { get; set; } = "sft";

    /// <summary>This client's LoRA rank budget r_i ≤ the run's lora.r, for the heterogeneous-rank algorithms (hetlora,
    /// flexlora, flora): the client trains only r_i rank components. Unset = the server's lora.rank_per_client entry, if any.</summary>
    public int? LoraRank { get; set; }

    /// <summary>client.yaml's data section.</summary>
    public sealed class ClientDataSection
    {
        /// <summary>The client's own training data file; it never leaves this machine.</summary>
        public string? Path { get; set; }
        /// <summary>Prompt template of the examples (a name from the template catalog, e.g. alpaca).</summary>
        public string Template { get; set; } = "alpaca";

        /// <summary>The file's schema: alpaca (sft); generic-preference, ultrafeedback, hh-rlhf (dpo).</summary>
        public string? Dataset { get; set; }
        /// <summary>True to drop malformed records (counted) instead of refusing the file.</summary>
        public bool SkipBad { get; set; }
    }

    /// <summary>Reads client.yaml (snake_case keys).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The YAML is malformed (names the file, line and column).</exception>
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
