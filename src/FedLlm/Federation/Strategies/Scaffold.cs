using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Strategies;

/// <summary>
/// SCAFFOLD (option II): control variates correct each client's drift. The server keeps c, each client keeps c_i;
/// clients apply the correction (c − c_i) at every local step, then send y_i and Δc_i; the server moves
/// x ← Σ p_i·y_i and c ← c + (1/N)·Σ_{i∈S} Δc_i, with N all clients, sampled or not.
/// </summary>
/// <remarks>
/// <para>Karimireddy, Kale, Mohri, Reddi, Stich, Suresh, "SCAFFOLD: Stochastic Controlled Averaging for Federated
/// Learning", ICML 2020 (arXiv:1910.06378), Algorithm 1 with option II for c_i⁺. Deviation from the paper's server step
/// x ← x + η_g·(1/|S|)·Σ(y_i − x): FedLlm, like OpenFedLLM, uses η_g = 1 and the example-weighted mean, so that SCAFFOLD
/// with zero control variates is exactly FedAvg; with equal shards the two rules agree.</para>
/// <para>Client side (<see cref="Correction"/>, <see cref="ClientControlUpdate"/>): the paper adds (c − c_i) to the
/// gradient of a plain SGD step, y ← y − η_l·(g + c − c_i); OpenFedLLM, training with AdamW, instead shifts the
/// parameters after every optimizer step, w ← w − η_l·(c − c_i), so the correction bypasses Adam's scaling. K is the
/// configured number of local steps (OpenFedLLM's max_steps), η_l this round's local learning rate.</para>
/// <para>State: c under keys "c/…", zeros until the first aggregation. Before then the server cannot know the
/// adapter's layout, so <see cref="ConfigureTrain"/> hands out an empty c, which stands for zeros.</para>
/// </remarks>
public sealed class Scaffold : IFederatedStrategy, IDisposable
{
    const string ControlSlot = "c";
    readonly int totalClients;
    readonly ServerState state = new(ControlSlot);

    /// <summary>Creates SCAFFOLD for <see cref="StrategyOptions.TotalClients"/> clients in all.</summary>
    /// <exception cref="ArgumentException">TotalClients is not set (SCAFFOLD's c step divides by it).</exception>
    public Scaffold(StrategyOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.TotalClients < 1)
            throw new ArgumentException(
                $"SCAFFOLD needs {nameof(StrategyOptions.TotalClients)} (N, all clients, sampled or not) ≥ 1, got {options.TotalClients}",
                nameof(options));
        totalClients = options.TotalClients;
    }

    /// <inheritdoc/>
    public string Name => "scaffold";

    /// <summary>The client hook that applies the correction and sends Δc_i (<see cref="ScaffoldClientHooks"/>).</summary>
    public const string HookName = "scaffold";

    /// <summary>The tensor set that carries the server's c to the clients.</summary>
    public const string ServerControlSet = "server_control";

    /// <summary>The tensor set that carries Δc_i back.</summary>
    public const string ControlDeltaSet = "control_delta";

    /// <summary>Plain local training with the correction (c − c_i); carries a copy of the server's c (empty = zeros
    /// before the first aggregation) and asks for Δc_i back.</summary>
    public ClientInstructions ConfigureTrain(int round, double learningRate) => new(round, learningRate)
    {
        Hooks = [HookName],
        TensorSets = new Dictionary<string, IReadOnlyDictionary<string, Tensor>>
        {
            [ServerControlSet] = state.IsEmpty ? new Dictionary<string, Tensor>() : TensorMaps.Clone(state[ControlSlot]),
        },
        ReturnedTensorSets = [ControlDeltaSet],
    };

    /// <inheritdoc/>
    /// <exception cref="AggregationException">Also when an update lacks its control delta, or a round has more updates
    /// than N clients exist.</exception>
    public IReadOnlyDictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates, [ControlDeltaSet]);
        if (updates.Count > totalClients)
            throw new AggregationException(
                $"{updates.Count} updates in one round, but {nameof(StrategyOptions.TotalClients)} says there are only {totalClients} clients");
        state.CheckFits(global);

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var next = FedAvg.WeightedAverage(global, updates);

        // (1/N)·Σ_{i∈S} Δc_i: divided by all N clients, not |S|, because c estimates the mean of all clients' c_i and
        // the clients that sat out this round kept theirs.
        var deltas = ClientTensors.TensorSetsOf(updates, ControlDeltaSet);
        var step = Averaging.WeightedSum(deltas, Enumerable.Repeat(1.0 / totalClients, deltas.Count).ToArray());
        var control = new Dictionary<string, Tensor>(global.Count);
        foreach (var (key, like) in global)
        {
            using var keyScope = torch.NewDisposeScope();
            var working = TensorMaps.WorkingType(like.dtype);
            var previous = state.IsEmpty ? torch.zeros(like.shape, working, like.device) : state[ControlSlot][key];
            control[key] = previous.add(step[key].to(working), Runtime.Scalars.One).MoveToOuterDisposeScope();
        }

        state.Commit(new Dictionary<string, Dictionary<string, Tensor>> { [ControlSlot] = control });
        foreach (var tensor in next.Values) tensor.MoveToOuterDisposeScope();
        return next;
    }

    /// <summary>A copy of c under keys "c/…"; empty before the first aggregation.</summary>
    public IReadOnlyDictionary<string, Tensor> State => state.Snapshot();

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state) => this.state.Load(state, Name);

    /// <summary>Frees c.</summary>
    public void Dispose() => state.Dispose();

    /// <summary>
    /// The client's drift correction c − c_i, per key. A key missing from either map counts as zeros (both start at
    /// zero, and before the first aggregation the server's c is empty).
    /// </summary>
    /// <returns>New tensors in the caller's dispose scope: c's keys first, then keys only c_i has.</returns>
    /// <exception cref="ArgumentException">A key present in both has different shapes.</exception>
    public static Dictionary<string, Tensor> Correction(
        IReadOnlyDictionary<string, Tensor> serverControl, IReadOnlyDictionary<string, Tensor> clientControl)
    {
        ArgumentNullException.ThrowIfNull(serverControl);
        ArgumentNullException.ThrowIfNull(clientControl);
        foreach (var (key, c) in serverControl)
            if (clientControl.TryGetValue(key, out var ci) && !c.shape.SequenceEqual(ci.shape))
                throw new ArgumentException(
                    $"control variate '{key}': server shape [{string.Join(", ", c.shape)}], client [{string.Join(", ", ci.shape)}]",
                    nameof(clientControl));

        using var noGrad = torch.no_grad();
        var result = new Dictionary<string, Tensor>();
        foreach (var key in serverControl.Keys.Concat(clientControl.Keys.Where(k => !serverControl.ContainsKey(k))))
        {
            using var scope = torch.NewDisposeScope();
            bool hasServer = serverControl.TryGetValue(key, out var c);
            bool hasClient = clientControl.TryGetValue(key, out var ci);
            Tensor difference;
            if (hasServer && hasClient) difference = c! - ci!.to(c!.dtype);
            else if (hasServer) difference = c!.clone(); // c_i = 0
            else difference = ci!.neg();                 // c = 0
            result[key] = difference.MoveToOuterDisposeScope();
        }
        return result;
    }

    /// <summary>
    /// Option II of SCAFFOLD: c_i⁺ = (x − y_i)/(K·η_l) − (c − c_i) and Δc_i = c_i⁺ − c_i, per key of the global x.
    /// The client keeps c_i⁺ and sends Δc_i as the update's "control_delta" tensor set.
    /// </summary>
    /// <param name="global">x, the global adapter the client started the round from.</param>
    /// <param name="local">y_i, the client's adapter after local training; same keys, shapes and dtypes as x.</param>
    /// <param name="serverControl">c, as received in the "server_control" tensor set; missing keys are zeros.</param>
    /// <param name="clientControl">c_i before this round; missing keys (an empty map in the client's first round) are zeros.</param>
    /// <param name="localSteps">K, the configured number of local optimizer steps (OpenFedLLM's max_steps).</param>
    /// <param name="learningRate">η_l, the local learning rate of this round.</param>
    /// <returns>New tensors in x's dtype, in the caller's dispose scope.</returns>
    /// <exception cref="ArgumentException">Layouts differ, a control map has a key x lacks, K ≤ 0 or η_l ≤ 0.</exception>
    public static (Dictionary<string, Tensor> NewControl, Dictionary<string, Tensor> Delta) ClientControlUpdate(
        IReadOnlyDictionary<string, Tensor> global,
        IReadOnlyDictionary<string, Tensor> local,
        IReadOnlyDictionary<string, Tensor> serverControl,
        IReadOnlyDictionary<string, Tensor> clientControl,
        int localSteps,
        double learningRate)
    {
        ArgumentNullException.ThrowIfNull(global);
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(serverControl);
        ArgumentNullException.ThrowIfNull(clientControl);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(localSteps);
        if (!(learningRate > 0) || double.IsInfinity(learningRate))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "the local learning rate must be finite and positive");
        if (TensorMaps.FindMismatch(global, local) is { } mismatch)
            throw new ArgumentException($"local adapter: tensor '{mismatch.Key}' {mismatch.Problem}", nameof(local));
        CheckControl(global, serverControl, nameof(serverControl));
        CheckControl(global, clientControl, nameof(clientControl));

        using var noGrad = torch.no_grad();
        var newControl = new Dictionary<string, Tensor>(global.Count);
        var delta = new Dictionary<string, Tensor>(global.Count);
        double scale = 1.0 / (localSteps * learningRate);
        using var scaleScalar = scale.ToScalar();   // named, not an implicit Scalar a finalizer could free mid-call (Runtime.Scalars)
        foreach (var (key, x) in global)
        {
            using var scope = torch.NewDisposeScope();
            var working = TensorMaps.WorkingType(x.dtype);
            var ci = clientControl.TryGetValue(key, out var held) ? held.to(working) : torch.zeros(x.shape, working, x.device);
            var c = serverControl.TryGetValue(key, out var server) ? server.to(working) : torch.zeros(x.shape, working, x.device);
            var updated = (x.to(working) - local[key].to(working)).mul(scaleScalar) - (c - ci);
            newControl[key] = updated.to(x.dtype).MoveToOuterDisposeScope();
            delta[key] = (updated - ci).to(x.dtype).MoveToOuterDisposeScope();
        }
        return (newControl, delta);
    }

    static void CheckControl(IReadOnlyDictionary<string, Tensor> global, IReadOnlyDictionary<string, Tensor> control, string name)
    {
        foreach (var (key, tensor) in control)
        {
            if (!global.TryGetValue(key, out var like))
                throw new ArgumentException($"control variate has tensor '{key}', which the global adapter lacks", name);
            if (!tensor.shape.SequenceEqual(like.shape))
                throw new ArgumentException(
                    $"control variate '{key}' has shape [{string.Join(", ", tensor.shape)}], the global [{string.Join(", ", like.shape)}]", name);
        }
    }
}

/// <summary>
/// SCAFFOLD on the client. Before training: the correction c − c_i, applied as OpenFedLLM applies it, after each
/// optimizer step w ← w − η·(c − c_i). After training: option II's c_i⁺, kept in the client's state section "control",
/// and Δc_i sent back as the "control_delta" tensor set.
/// </summary>
public sealed class ScaffoldClientHooks : IClientHooks
{
    const string ControlSection = "control";

    /// <inheritdoc/>
    public string Name => Scaffold.HookName;

    /// <inheritdoc/>
    public void BeforeTraining(ClientRoundContext context)
    {
        var correction = context.Track(Scaffold.Correction(context.Instructions.TensorSet(Scaffold.ServerControlSet), context.State.Section(ControlSection)));
        var trainable = context.Trainable;
        context.AfterOptimizerStep(lr =>
        {
            using var noGrad = torch.no_grad();
            using var negativeLr = (-lr).ToScalar();   // named, not an implicit Scalar a finalizer could free mid-call (Runtime.Scalars)
            foreach (var (key, parameter) in trainable)
                if (correction.TryGetValue(key, out var c)) parameter.add_(c, negativeLr);
        });
    }

    /// <inheritdoc/>
    public void AfterTraining(ClientRoundContext context)
    {
        var (newControl, delta) = Scaffold.ClientControlUpdate(context.Global, context.Local!, context.Instructions.TensorSet(Scaffold.ServerControlSet),
            context.State.Section(ControlSection), context.LocalSteps, context.LearningRate);
        foreach (var t in newControl.Values.Concat(delta.Values)) t.DetachFromDisposeScope();
        context.State.ReplaceSection(ControlSection, newControl);
        context.Send(Scaffold.ControlDeltaSet, delta);
    }
}
