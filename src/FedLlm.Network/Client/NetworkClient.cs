using FedLlm.Data;
using FedLlm.Federation;
using FedLlm.Federation.Personalization;
using FedLlm.Federation.SecureAggregation;
using FedLlm.Evaluation;
using SecAggPhase = FedLlm.Federation.SecureAggregation.SecAggPhase;
using FedLlm.Federation.Transfer;
using FedLlm.Modeling;
using FedLlm.Network.Protocol;
using FedLlm.Network.Transfer;
using FedLlm.Peft;
using FedLlm.Runs;
using FedLlm.Training;
using FedLlm.Tokenization;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace FedLlm.Network.Client;

/// <summary>What a client process trains on and where it keeps its state.</summary>
public sealed record NetworkClientOptions
{
    /// <summary>The base model's checkpoint folder; must match the server's base (the handshake compares
    /// fingerprints).</summary>
    public required string ModelDirectory { get; init; }

    /// <summary>The frozen base's storage (fp32 unless the client's config says otherwise).</summary>
    public Quantization.BaseWeights BaseWeights { get; init; } = Quantization.BaseWeights.Fp32;
    /// <summary>The client's own training data file; it never leaves this machine.</summary>
    public required string DataPath { get; init; }
    /// <summary>Prompt template the examples are rendered with (a name from the template catalog, e.g. alpaca); must
    /// match the server's evaluation template for comparable scores.</summary>
    public string Template { get; init; } = "alpaca";

    /// <summary>What the data holds: "sft" (instruction examples) or "dpo" (preference pairs); the server refuses a
    /// client whose task is not the run's.</summary>
    public string Task { get; init; } = "sft";

    /// <summary>The data file's schema (alpaca; generic-preference, ultrafeedback, hh-rlhf); null = the task's usual one.</summary>
    public string? Dataset { get; init; }
    /// <summary>True to drop malformed records of the data file (counted and reported) instead of refusing the
    /// file.</summary>
    public bool SkipBad { get; init; }
    /// <summary>Where this client keeps its per-round state files (<see cref="ClientStateStore"/>).</summary>
    public required string StateDirectory { get; init; }

    /// <summary>How long one WaitForTask call waits on the server before asking again.</summary>
    public TimeSpan PollWait { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Longest pause between reconnection attempts (the pause doubles from 0.5 s up to this).</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The client hooks this client can run (the built-in algorithms' by default); the server names the ones a
    /// round needs.</summary>
    public AlgorithmRegistry Algorithms { get; init; } = Runs.FederatedRun.DefaultAlgorithms;

    /// <summary>Fault injection for drop-out tests: before sending its message of this secure-aggregation phase the
    /// process kills itself (SIGKILL, as <c>kill -9</c>); null = never. The CLI sets it from the environment variable
    /// <c>FEDLLM_FAULT_SECAGG_KILL_BEFORE</c> (advertise-keys, share-keys, masked-input, unmask).</summary>
    public SecAggPhase? KillBeforeSecAggPhase { get; init; }

    /// <summary>This client's LoRA rank budget (client.yaml <c>lora_rank</c>) for hetlora and flexlora; null = the
    /// server's table decides.</summary>
    public int? LoraRank { get; init; }

    /// <summary>For tests only (the client's hidden --test-step-delay): an artificial pause per local step, added after a
    /// task's training, so one process on a shared machine plays a slow device (asynchronous aggregation's staleness).
    /// Zero in real use.</summary>
    public TimeSpan StepDelay { get; init; }
}

/// <summary>
/// A client process's life: dial out, join, poll for tasks, fetch the global adapter, train it with
/// <see cref="FederatedClient.Train(string, int, FedLlm.Training.IClientDataset, IReadOnlyDictionary{string, TorchSharp.torch.Tensor}, ClientInstructions, ClientState, CancellationToken)"/> (the same code as in simulation), stream the update back, keep its state on disk;
/// and when the server is away, reconnect with backoff and join again.
/// </summary>
public sealed class NetworkClient(ServerConnection connection, NetworkClientOptions options, ILogger logger) : IDisposable
{
    readonly ClientStateStore store = new(options.StateDirectory);
    Session? session;
    int workingOn = -1;
    // The bulk channel, when the server offered it at the last join (and this connection can use it).
    BulkClient? bulk;
    // The last round's global adapter and tensor sets, for the next round's to be received into (see ReceivePool).
    readonly ReceivePool received = new(8L << 30);

    /// <summary>Runs until the server says the run has finished (returns 0) or refuses this client for good (returns 2:
    /// not on the roster, removed, another CA, a revoked certificate, another protocol, base model or task), with the
    /// reason in one log line. Outages, and a server that is stopping, are waited out with backoff.</summary>
    public async Task<int> RunAsync(CancellationToken cancellationToken = default)
    {
        // Two client processes on one state_dir would overwrite each other's per-round state.
        using var held = Io.RunDirectoryLock.Acquire(options.StateDirectory);
        var backoff = TimeSpan.FromMilliseconds(500);
        fingerprint ??= await Task.Run(() => ModelFingerprint.Of(options.ModelDirectory), cancellationToken);
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                connection.Tls?.Clear();
                using var channel = connection.Open();
                var api = new Protocol.Federation.FederationClient(channel);
                var secAgg = new Protocol.SecAggFederation.SecAggFederationClient(channel);
                var join = await JoinAsync(api, cancellationToken);
                bulk = join.BulkTransfer && BulkClient.Available(connection) ? new BulkClient(connection) : null;
                backoff = TimeSpan.FromMilliseconds(500);
                logger.LogInformation("client {Client} joined run {Run} at {Address} as roster index {Index}; adapters travel over {Channel}", connection.ClientId, join.RunId,
                    connection.Address, join.RosterIndex, bulk is not null ? "the bulk channel" : "gRPC");
                // Heartbeats start at once: loading the model and data on the first join can take a while.
                using var heartbeatStop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                var heartbeats = HeartbeatAsync(api, TimeSpan.FromSeconds(join.HeartbeatSeconds), heartbeatStop.Token);
                try
                {
                    bool declared = session is not null;
                    await Task.Run(() => Prepare(join), cancellationToken);
                    // The first join could not say how many examples this client holds (the data is read with the
                    // server's settings): say it now, before any task.
                    if (!declared) await JoinAsync(api, cancellationToken);
                    while (true)
                    {
                        var reply = await api.WaitForTaskAsync(new WaitForTaskRequest { WaitSeconds = options.PollWait.TotalSeconds }, connection.Headers(),
                            DateTime.UtcNow + options.PollWait + TimeSpan.FromSeconds(30), cancellationToken);
                        if (reply.OutcomeCase == WaitForTaskReply.OutcomeOneofCase.Finished)
                        {
                            logger.LogInformation("client {Client}: the run has finished", connection.ClientId);
                            return 0;
                        }
                        if (reply.OutcomeCase == WaitForTaskReply.OutcomeOneofCase.Stopping)
                            throw new RpcException(new Status(StatusCode.Unavailable, $"the server is stopping ({reply.Stopping.Reason})"));
                        if (reply.OutcomeCase == WaitForTaskReply.OutcomeOneofCase.Task) await RunTaskAsync(api, secAgg, reply.Task, cancellationToken);
                    }
                }
                finally
                {
                    await heartbeatStop.CancelAsync();
                    await heartbeats;
                }
            }
            catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
            {
                var failure = ConnectionFailure.Classify(e, connection);
                if (failure.Permanent)
                {
                    logger.LogError("client {Client}: {Reason}", connection.ClientId, failure.Message);
                    return 2;
                }
                logger.LogWarning("client {Client}: {Reason}; retrying in {Seconds:F1} s", connection.ClientId, failure.Message, backoff.TotalSeconds);
                await Task.Delay(backoff, cancellationToken);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, options.MaxBackoff.Ticks));
            }
        }
    }

    ModelFingerprint? fingerprint;

    Task<JoinReply> JoinAsync(Protocol.Federation.FederationClient api, CancellationToken cancellationToken)
    {
        var request = new JoinRequest
        {
            Protocol = ProtocolInfo.Current, ClientId = connection.ClientId, ModelFingerprint = fingerprint!.Combined,
            // Training and held-out examples: an update may claim either part, never more than the client holds.
            ModelFiles = new BaseModelFiles(), Task = options.Task, ExampleCount = session is null ? 0 : session.Shard.Count + session.HeldOut.Count,
        };
        request.ModelFiles.Sha256.Add(fingerprint.Files.ToDictionary());
        return api.JoinAsync(request, connection.Headers(), DateTime.UtcNow.AddSeconds(30), cancellationToken).ResponseAsync;
    }

    async Task HeartbeatAsync(Protocol.Federation.FederationClient api, TimeSpan interval, CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(interval, cancellationToken);
                try
                {
                    await api.HeartbeatAsync(new HeartbeatRequest { Round = workingOn }, connection.Headers(), DateTime.UtcNow + interval, cancellationToken);
                }
                catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
                {
                    logger.LogDebug("heartbeat failed: {Status}", e.StatusCode);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (RpcException) when (cancellationToken.IsCancellationRequested)
        {
            // A heartbeat in flight when the loop is stopped ends as Cancelled; rethrown from the caller's finally, it
            // would turn "the run has finished" into a reconnect to a server that has already exited.
        }
    }

    /// <summary>Loads the model, LoRA layout and data on the first join; checks a later join describes the same run.</summary>
    void Prepare(JoinReply join)
    {
        if (session is not null)
        {
            if (session.RunId != join.RunId)
                throw new InvalidOperationException($"the server now runs {join.RunId}, not {session.RunId}; restart the client to join the new run");
            return;
        }
        var training = WireMapping.FromWire(join.Training);
        training.Validate();
        var lora = WireMapping.FromWire(join.Lora);
        lora.Validate();
        var objective = WireMapping.FromWire(join.Objective);
        objective.Validate();
        var tokenizer = TokenizerLoader.Load(options.ModelDirectory);
        IClientDataset shard;
        IReadOnlyList<InstructionExample> heldOut = [];
        if (join.ClientEvalFraction > 0)
        {
            if (objective.IsDpo)
                throw new InvalidOperationException("the server asks for per-client evaluation (data.client_eval_fraction), which supports the sft task only");
            (shard, heldOut) = RunData.LoadClientWithHeldOut(options.DataPath, options.Dataset, options.Template, options.SkipBad, tokenizer,
                training.MaxSequenceLength, join.ClientEvalFraction, training.Seed, join.RosterIndex);
        }
        else shard = RunData.LoadClient(objective, options.DataPath, options.Dataset, options.Template, options.SkipBad, tokenizer, training.MaxSequenceLength);
        var model = ModelLoader.Load(options.ModelDirectory, options.BaseWeights);
        // The initial LoRA values do not matter: every round loads the server's global adapter over them.
        LoraInjector.Inject(model, lora, new Generator((ulong)training.Seed));
        if (store.BindToRun(join.RunId)) logger.LogWarning("client {Client}: removed state of an earlier run from {Directory}", connection.ClientId, store.Directory);
        var hooks = options.LoraRank is { } ownRank
            ? FedLlm.Federation.LowRank.RankBudget.WithOwnRank(options.Algorithms, ownRank, lora.Rank, "client.yaml lora_rank")
            : options.Algorithms;
        session = new Session(join.RunId, join.RosterIndex, model, new FederatedClient(model, training, hooks, tokenizer.PadTokenId ?? 0), shard, TransferEncoding.Parse(join.UpdateEncoding),
            training.LocalSteps)
        {
            HeldOut = heldOut,
            Evaluate = heldOut.Count == 0 ? null : EvaluateOn(new HeldOutEvaluation(model, tokenizer, PromptTemplate.FromName(options.Template), training.MaxSequenceLength)),
        };
        logger.LogInformation("client {Client}: {Examples} {Kind} from {Data}{HeldOut}", connection.ClientId, shard.Count,
            objective.IsDpo ? "preference pairs" : "examples", options.DataPath, heldOut.Count == 0 ? "" : $", {heldOut.Count} held out for per-client evaluation");
    }

    async Task RunTaskAsync(Protocol.Federation.FederationClient api, Protocol.SecAggFederation.SecAggFederationClient secAgg, RoundTask task,
        CancellationToken cancellationToken)
    {
        var s = session!;
        logger.LogInformation("round {Round}: client {Client} got its task (lr {LearningRate:G4})", RoundRecord.NumberOf(task.Round), connection.ClientId, task.LearningRate);
        workingOn = task.Round;
        Dictionary<string, Tensor>? global = null;
        var sets = new Dictionary<string, IReadOnlyDictionary<string, Tensor>>(StringComparer.Ordinal);
        ClientState? state = null;
        ClientUpdate? update = null;
        try
        {
            try
            {
                global = bulk is not null
                    ? await bulk.FetchAsync(new FetchRequest { Round = task.Round }, tensorSet: false, cancellationToken, received)
                    : await FetchAsync(api.FetchGlobal(new FetchRequest { Round = task.Round }, connection.Headers(), cancellationToken: cancellationToken), cancellationToken, received);
                foreach (var name in task.TensorSets)
                    sets[name] = bulk is not null
                        ? await bulk.FetchAsync(new FetchRequest { Round = task.Round, TensorSet = name }, tensorSet: true, cancellationToken, received)
                        : await FetchAsync(api.FetchTensorSet(new FetchRequest { Round = task.Round, TensorSet = name }, connection.Headers(), cancellationToken: cancellationToken), cancellationToken, received);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition)
            {
                logger.LogWarning("round {Round}: client {Client} could not fetch the round: {Reason}", RoundRecord.NumberOf(task.Round), connection.ClientId, e.Status.Detail);
                return;
            }
            var instructions = WireMapping.FromWire(task, sets);
            if (PersonalEvaluationOnClients.Asks(instructions))
            {
                // The round's training is over: the state to score is the one after it (this client's last accepted round).
                state = store.LoadBefore(task.Round + 1);
                var (scoredGlobal, scoredState) = (global, state);
                update = await Task.Run(() => ScoreHeldOut(s, scoredGlobal, instructions, scoredState), cancellationToken);
                var answer = await SubmitAsync(api, task.Round, update, s.Encoding, cancellationToken);
                for (int attempt = 1; !answer.Accepted && answer.RetryAfterSeconds > 0 && attempt <= MaxBusyRetries; attempt++)
                {
                    await Task.Delay(TimeSpan.FromSeconds(Math.Min(60, answer.RetryAfterSeconds)), cancellationToken);
                    answer = await SubmitAsync(api, task.Round, update, s.Encoding, cancellationToken);
                }
                if (answer.Accepted)
                    logger.LogInformation("round {Round}: client {Client} evaluated its adapters on {Examples} held-out examples (global {Global:F4}, personal {Personal:F4})",
                        RoundRecord.NumberOf(task.Round), connection.ClientId, update.ExampleCount, update.Metrics!["global_exact_match"], update.Metrics!["personal_exact_match"]);
                else logger.LogWarning("round {Round}: client {Client} evaluation refused: {Reason}", RoundRecord.NumberOf(task.Round), connection.ClientId, answer.Reason);
                return;
            }
            state = store.LoadBefore(task.Round);
            var localState = state;
            var localGlobal = global;
            update = await Task.Run(() => s.Client.Train(connection.ClientId, s.RosterIndex, s.Shard, localGlobal, instructions, localState), cancellationToken);
            if (options.StepDelay > TimeSpan.Zero) await Task.Delay(options.StepDelay * s.LocalSteps, cancellationToken);
            if (SecureAggregationOptions.FromConfig(instructions) is { } secure)
            {
                // The update never leaves this process: only its masked form does, through the four phases.
                if (await SecureAggregateAsync(secAgg, task.Round, instructions, secure, localGlobal, update, cancellationToken)) store.Save(task.Round, state);
                return;
            }
            var reply = await SubmitAsync(api, task.Round, update, s.Encoding, cancellationToken);
            for (int attempt = 1; !reply.Accepted && reply.RetryAfterSeconds > 0 && attempt <= MaxBusyRetries; attempt++)
            {
                // The server is busy reading other uploads: send the same update again, without training it again.
                logger.LogInformation("round {Round}: client {Client}: {Reason}", RoundRecord.NumberOf(task.Round), connection.ClientId, reply.Reason);
                await Task.Delay(TimeSpan.FromSeconds(Math.Min(60, reply.RetryAfterSeconds)), cancellationToken);
                reply = await SubmitAsync(api, task.Round, update, s.Encoding, cancellationToken);
            }
            if (reply.Accepted)
            {
                store.Save(task.Round, state);
                logger.LogInformation("round {Round}: client {Client} update accepted (train loss {Loss:F4})", RoundRecord.NumberOf(task.Round), connection.ClientId,
                    update.Metrics?.GetValueOrDefault("train_loss") ?? double.NaN);
            }
            else logger.LogWarning("round {Round}: client {Client} update refused: {Reason}", RoundRecord.NumberOf(task.Round), connection.ClientId, reply.Reason);
        }
        finally
        {
            workingOn = -1;
            state?.Dispose();
            // The update is the client's own (training and scoring return new tensors): freed. The received tensors go
            // to the next round's transfer; any that the update should share is freed with it, never pooled.
            var shared = update is null ? [] : update.Weights.Values.Concat(update.TensorSets.Values.SelectMany(t => t.Values)).ToHashSet(ReferenceEqualityComparer.Instance);
            update?.DisposeTensors();
            received.Return((global?.Values ?? Enumerable.Empty<Tensor>()).Concat(sets.Values.SelectMany(set => set.Values)).Where(t => !shared.Contains(t)).ToList());
        }
    }

    /// <summary>
    /// Answers a secure round: quantises the update (<see cref="SecureInput"/>), then runs this client's side of the
    /// four phases (<see cref="SecAggClient"/>) over SecAggExchange. Its private keys and self-mask seed stay in this
    /// process; the server gets public keys, shares encrypted for other clients, the masked input and, at the end, the
    /// shares it needs to unmask the sum. True when this client's input is in the round's sum.
    /// </summary>
    async Task<bool> SecureAggregateAsync(Protocol.SecAggFederation.SecAggFederationClient api, int round, ClientInstructions instructions,
        SecureAggregationOptions secure, IReadOnlyDictionary<string, Tensor> global, ClientUpdate update, CancellationToken cancellationToken)
    {
        var participants = instructions.Config.GetValueOrDefault(Server.SecureRemoteClients.ParticipantsKey)?.Split(',') ?? [];
        int me = Array.IndexOf(participants, connection.ClientId);
        if (me < 0)
        {
            logger.LogWarning("round {Round}: client {Client} is not among the task's secure-aggregation participants ({Participants}); the round goes on without it",
                RoundRecord.NumberOf(round), connection.ClientId, string.Join(",", participants));
            return false;
        }
        var quantiser = new FixedPointQuantiser(secure.QuantisationBits, secure.QuantisationRange);
        var input = SecureInput.Encode(update.Weights, global, update.ExampleCount, secure.MaxWeight, quantiser);
        using var session = new SecAggClient(round, me);
        bool counted = false;
        try
        {
            var roster = (KeyRoster)(await ExchangeAsync(api, round, SecAggPhase.AdvertiseKeys, session.Advertise(), update.ExampleCount,
                update.Metrics ?? new Dictionary<string, double>(), cancellationToken))!;
            var request = (MaskingRequest)(await ExchangeAsync(api, round, SecAggPhase.ShareKeys, session.ShareKeys(roster), 0, null, cancellationToken))!;
            var unmask = (UnmaskRequest)(await ExchangeAsync(api, round, SecAggPhase.MaskedInput, session.Mask(request, input), 0, null, cancellationToken))!;
            counted = unmask.Survivors.Contains(me);
            await ExchangeAsync(api, round, SecAggPhase.Unmask, session.Unmask(unmask), 0, null, cancellationToken);
            logger.LogInformation("round {Round}: client {Client} took part in secure aggregation (train loss {Loss:F4}; {Survivors} inputs in the sum, {Dropped} dropped)",
                RoundRecord.NumberOf(round), connection.ClientId, update.Metrics?.GetValueOrDefault("train_loss") ?? double.NaN, unmask.Survivors.Count, unmask.Dropped.Count);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition)
        {
            logger.LogWarning("round {Round}: client {Client}: secure aggregation refused: {Reason}", RoundRecord.NumberOf(round), connection.ClientId, e.Status.Detail);
        }
        catch (SecureAggregationException e)
        {
            // This client refuses a message that breaks the protocol (e.g. a request to reveal both secrets of a client).
            logger.LogWarning("round {Round}: client {Client}: {Reason}", RoundRecord.NumberOf(round), connection.ClientId, e.Message);
        }
        return counted;
    }

    /// <summary>Sends this client's message of <paramref name="phase"/> and asks again until the server closes the phase;
    /// returns the server's message for the next phase.</summary>
    async Task<object?> ExchangeAsync(Protocol.SecAggFederation.SecAggFederationClient api, int round, SecAggPhase phase, object message, long exampleCount,
        IReadOnlyDictionary<string, double>? metrics, CancellationToken cancellationToken)
    {
        if (options.KillBeforeSecAggPhase == phase)
        {
            logger.LogWarning("round {Round}: client {Client}: fault injection kills this process before the {Phase} phase", RoundRecord.NumberOf(round), connection.ClientId, phase);
            System.Diagnostics.Process.GetCurrentProcess().Kill();
        }
        var noMetrics = new Dictionary<string, double>();
        var parts = SecAggWireMapping.ToWireParts(new SecAggClientMessage(round, phase, message, exampleCount, metrics ?? noMetrics));
        var ask = SecAggWireMapping.ToWire(new SecAggClientMessage(round, phase, null, 0, noMetrics));
        var wait = Server.SecAggService.ReplyWait + TimeSpan.FromSeconds(30);
        foreach (var part in parts.SkipLast(1))
        {
            // Each part but the last is only stored by the server: its answer is "pending".
            var stored = await api.SecAggExchangeAsync(part, connection.Headers(), DateTime.UtcNow + wait, cancellationToken);
            if (!stored.Pending) throw new SecureAggregationException($"round {RoundRecord.NumberOf(round)}: the server answered part {part.Part} of {part.Parts} of the {phase} message as if it were whole");
        }
        var request = parts[^1];
        while (true)
        {
            var reply = await api.SecAggExchangeAsync(request, connection.Headers(), DateTime.UtcNow + wait, cancellationToken);
            if (!reply.Pending) return SecAggWireMapping.FromReply(phase, reply);
            request = ask;
        }
    }

    /// <summary>The answer to a per-client evaluation task: the global adapter and the personal one (from this client's
    /// state, through the hook the task names; the global when there is none) scored on the held-out split, as an update
    /// that carries the global unchanged (the server checks every answer as an update and drops its weights).</summary>
    ClientUpdate ScoreHeldOut(Session s, IReadOnlyDictionary<string, Tensor> global, ClientInstructions instructions, ClientState state)
    {
        var evaluate = s.Evaluate ?? throw new InvalidOperationException(
            $"round {RoundRecord.NumberOf(instructions.Round)}: the server asks for a per-client evaluation, but this client holds no held-out split (the run's data.client_eval_fraction was 0 when it joined)");
        EvaluationResult Score(IReadOnlyDictionary<string, Tensor> adapter)
        {
            AdapterTensors.Load(s.Model, adapter);
            return evaluate(s.HeldOut);
        }
        var globalScore = Score(global);
        var personalScore = globalScore;
        if (instructions.Config.TryGetValue(PersonalEvaluationOnClients.PersonalHookKey, out var name))
        {
            var hook = options.Algorithms.Hook(name) as IPersonalizedClientHooks
                ?? throw new InvalidOperationException($"round {RoundRecord.NumberOf(instructions.Round)}: client hook '{name}' keeps no personal adapter");
            var adapter = hook.PersonalAdapter(global, state);
            if (adapter is not null) personalScore = Score(adapter); // a client that never trained holds only the global
            AdapterTensors.Dispose(adapter);
        }
        return new ClientUpdate(connection.ClientId, AdapterTensors.Clone(global), s.HeldOut.Count,
            PersonalEvaluationOnClients.ClientMetrics(s.HeldOut.Count, globalScore, personalScore));
    }

    static Func<IReadOnlyList<InstructionExample>, EvaluationResult> EvaluateOn(HeldOutEvaluation evaluation) => examples =>
    {
        var scores = evaluation.Evaluate(examples);
        return new EvaluationResult(scores.Loss, scores.ExactMatch);
    };

    /// <summary>Reads a streamed tensor set, one tensor's bytes at a time.</summary>
    /// <param name="call">The FetchGlobal or FetchTensorSet call.</param>
    /// <param name="cancellationToken">Stops reading.</param>
    /// <param name="reuse">Tensors of earlier rounds to decode fp32 tensors into; null = new tensors.</param>
    public static async Task<Dictionary<string, Tensor>> FetchAsync(AsyncServerStreamingCall<TensorChunk> call, CancellationToken cancellationToken, ReceivePool? reuse = null)
    {
        using var _ = call;
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var assembler = new TensorAssembler(h => tensors.ContainsKey(h.Name) ? $"tensor '{h.Name}' sent twice" : null, reuse is null ? null : reuse.Rent);
        try
        {
            while (await call.ResponseStream.MoveNext(cancellationToken))
                if (assembler.Add(call.ResponseStream.Current) is { } done) tensors[done.Name] = done.Tensor.DetachFromDisposeScope();
            assembler.Finish();
            return tensors;
        }
        catch
        {
            AdapterTensors.Dispose(tensors);
            throw;
        }
    }

    /// <summary>Streams an update: header, then each tensor's chunks (weights, then each tensor set in name order).</summary>
    public static async Task<SubmitReply> SubmitAsync(Protocol.Federation.FederationClient api, ServerConnection connection, int round, ClientUpdate update,
        TransferEncoding encoding, CancellationToken cancellationToken)
    {
        using var call = api.SubmitUpdate(connection.Headers(), cancellationToken: cancellationToken);
        try
        {
            await call.RequestStream.WriteAsync(new UpdateChunk { Header = UpdateHeaderOf(round, update) }, cancellationToken);
            foreach (var (setName, name, tensor) in InWireOrder(update))
                foreach (var chunk in TensorChunks.Stream(name, tensor, encoding))
                    await call.RequestStream.WriteAsync(setName.Length == 0
                        ? new UpdateChunk { Weights = chunk }
                        : new UpdateChunk { TensorSet = new TensorSetChunk { TensorSet = setName, Chunk = chunk } }, cancellationToken);
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException or IOException)
        {
            // The server may answer (refuse) before reading everything; its reply says why. A write on a client stream
            // whose connection broke (the server killed mid-upload) throws the transport's IOException as it is, not an
            // RpcException: the response below then fails with the call's RpcException (Unavailable), which the run
            // loop takes as "server away, rejoin". Letting the IOException out ended the client process instead, and a
            // restarted server then waited forever for that client's update.
        }
        return await call.ResponseAsync;
    }

    /// <summary>What an update's header says: round, client, example count, metrics.</summary>
    internal static UpdateHeader UpdateHeaderOf(int round, ClientUpdate update)
    {
        var header = new UpdateHeader { Round = round, ClientId = update.ClientId, ExampleCount = update.ExampleCount };
        if (update.Metrics is not null) foreach (var (key, value) in update.Metrics) header.Metrics[key] = value;
        return header;
    }

    /// <summary>An update's tensors in the order they travel: the weights, then each tensor set, each by name; the set
    /// name is empty for the weights.</summary>
    internal static IEnumerable<(string Set, string Name, Tensor Tensor)> InWireOrder(ClientUpdate update)
    {
        foreach (var (name, tensor) in update.Weights.OrderBy(kv => kv.Key, StringComparer.Ordinal)) yield return ("", name, tensor);
        foreach (var (setName, set) in update.TensorSets.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            foreach (var (name, tensor) in set.OrderBy(kv => kv.Key, StringComparer.Ordinal)) yield return (setName, name, tensor);
    }

    Task<SubmitReply> SubmitAsync(Protocol.Federation.FederationClient api, int round, ClientUpdate update, TransferEncoding encoding, CancellationToken cancellationToken) =>
        bulk is not null ? bulk.SubmitAsync(round, update, encoding, cancellationToken) : SubmitAsync(api, connection, round, update, encoding, cancellationToken);

    /// <summary>Frees the loaded model and the data shard of the current session, if any.</summary>
    public void Dispose()
    {
        received.Dispose();
        (session?.Shard as IDisposable)?.Dispose();
        session?.Model.Dispose();
    }

    /// <summary>How often an update the server was too busy to read is sent again before the round is given up.</summary>
    const int MaxBusyRetries = 30;

    sealed record Session(string RunId, int RosterIndex, LlamaForCausalLM Model, FederatedClient Client, IClientDataset Shard, TransferEncoding Encoding, int LocalSteps)
    {
        /// <summary>The client's own held-out split (data.client_eval_fraction), never trained on; empty without one.</summary>
        public IReadOnlyList<InstructionExample> HeldOut { get; init; } = [];

        /// <summary>Scores an adapter loaded in the model on <see cref="HeldOut"/>; null without a split.</summary>
        public Func<IReadOnlyList<InstructionExample>, EvaluationResult>? Evaluate { get; init; }
    }
}
