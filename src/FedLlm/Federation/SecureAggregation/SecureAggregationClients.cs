using System.Diagnostics;
using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Federation.SecureAggregation;

/// <summary>
/// Clients that answer a round with one secure aggregate instead of their individual updates: after local training
/// each client turns its update into a quantised input (<see cref="SecureInput"/>), and the four phases of SecAgg(+) run
/// between them and a <see cref="SecAggServer"/> (<see cref="InProcessSecAgg"/>), which releases only the survivors' sum.
/// Rounds whose instructions carry no secure-aggregation settings pass through unchanged.
/// </summary>
/// <remarks>
/// <para>This is the simulation executor: the clients are in this process, so "the client side" (encoding, keys, masks)
/// and the server side run here, and every message crosses in its byte form. Over the network the same sessions sit in
/// the client processes and the phases are gRPC exchanges (FedLlm.Network's SecureRemoteClients); both end in
/// <see cref="AggregateOf"/>.</para>
/// <para>Participants are numbered 0 … n−1 in ordinal order of client id for the round. The aggregate's metrics carry
/// the survivors' mean train loss (clients report losses in the clear, as without secure aggregation), the number of
/// survivors, Σ w_i, the protocol's bytes and seconds, and how many dropped at each phase.</para>
/// </remarks>
public sealed class SecureAggregationClients : IClientExecutor, IDisposable
{
    /// <summary>Metric keys of the aggregate.</summary>
    public const string ProtocolBytesMetric = "secagg_protocol_bytes", ProtocolSecondsMetric = "secagg_seconds", DroppedMetric = "secagg_dropped";

    readonly IClientExecutor inner;
    readonly Func<int, string, SecAggPhase, bool>? dropsBefore;
    readonly Dictionary<int, (long Sent, long Received)> traffic = new();

    /// <summary>Wraps <paramref name="inner"/> (which trains the clients).</summary>
    /// <param name="dropsBefore">Simulated dropouts: (round, client id, phase) → whether the client falls away before
    /// sending that phase's message; null = none.</param>
    /// <param name="inner">The executor that trains the clients.</param>
    public SecureAggregationClients(IClientExecutor inner, Func<int, string, SecAggPhase, bool>? dropsBefore = null)
    {
        ArgumentNullException.ThrowIfNull(inner);
        this.inner = inner;
        this.dropsBefore = dropsBefore;
    }

    /// <inheritdoc/>
    public async Task<IReadOnlyList<ClientUpdate>> TrainRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default)
    {
        var options = SecureAggregationOptions.FromConfig(instructions);
        var updates = await inner.TrainRoundAsync(round, clients, global, instructions, cancellationToken);
        if (options is null || updates.Count == 0) return updates;
        try
        {
            return [Aggregate(round, clients.Count, updates, global, options)];
        }
        finally
        {
            foreach (var u in updates) u.DisposeTensors();
        }
    }

    ClientUpdate Aggregate(int round, int sampled, IReadOnlyList<ClientUpdate> updates, IReadOnlyDictionary<string, Tensor> global, SecureAggregationOptions options)
    {
        var clock = Stopwatch.StartNew();
        var ordered = updates.OrderBy(u => u.ClientId, StringComparer.Ordinal).ToList();
        if (ordered.FirstOrDefault(u => u.TensorSets.Count > 0) is { } carrying)
            throw new SecureAggregationException($"round {round}: client '{carrying.ClientId}' sends tensor sets ({string.Join(", ", carrying.TensorSets.Keys)}) beside its update; secure aggregation sums the update alone");
        var quantiser = new FixedPointQuantiser(options.QuantisationBits, options.QuantisationRange);
        var inputs = new Dictionary<int, uint[]>(ordered.Count);
        for (int i = 0; i < ordered.Count; i++)
            inputs[i] = SecureInput.Encode(ordered[i].Weights, global, ordered[i].ExampleCount, options.MaxWeight, quantiser);
        var (result, protocol) = InProcessSecAgg.Run(round, inputs, options.Threshold!.Value, options.Neighbours,
            dropsBefore is null ? null : (id, phase) => dropsBefore(round, ordered[id].ClientId, phase));
        var survivors = result.Survivors.Select(i => ordered[i]).ToList();
        long adapterBytes = AdapterTensors.Bytes(global);
        traffic[round] = (adapterBytes * sampled + protocol.ToClients, protocol.ToServer);
        return AggregateOf(result.Sum, survivors, result.DroppedPerPhase.Sum() + (sampled - updates.Count), global, options,
            protocol.ToClients + protocol.ToServer, clock.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// The one update a secure round delivers: x + the survivors' weighted mean Δ decoded from their secure
    /// <paramref name="sum"/>, with the survivors' mean train loss, their number, Σ w_i, the dropouts and the protocol's
    /// bytes and seconds as metrics. The simulation and the network server both end a round here, so they agree bit for
    /// bit on the same sum.
    /// </summary>
    /// <param name="sum">Σ x_u over the survivors, unmasked.</param>
    /// <param name="survivors">The survivors' reports (example count, metrics; their weights are not read), in
    /// participant order.</param>
    /// <param name="dropped">Sampled clients whose inputs the sum does not hold.</param>
    /// <param name="global">The round's global adapter.</param>
    /// <param name="options">The round's secure-aggregation settings.</param>
    /// <param name="protocolBytes">Bytes of the protocol's messages, both ways.</param>
    /// <param name="seconds">Seconds the protocol took.</param>
    public static ClientUpdate AggregateOf(uint[] sum, IReadOnlyList<ClientUpdate> survivors, int dropped, IReadOnlyDictionary<string, Tensor> global,
        SecureAggregationOptions options, long protocolBytes, double seconds)
    {
        ArgumentNullException.ThrowIfNull(survivors);
        ArgumentNullException.ThrowIfNull(options);
        var quantiser = new FixedPointQuantiser(options.QuantisationBits, options.QuantisationRange);
        var (delta, weightSum) = SecureInput.DecodeMean(sum, survivors.Count, global, quantiser);
        try
        {
            var aggregate = PreAggregatedUpdate.Create(global, delta, PreAggregatedUpdate.TotalExamples(survivors));
            var losses = survivors.Select(u => u.Metrics?.GetValueOrDefault("train_loss", double.NaN) ?? double.NaN).Where(double.IsFinite).ToList();
            var metrics = new Dictionary<string, double>
            {
                [SecureAggregate.ClientsMetric] = survivors.Count,
                [SecureAggregate.WeightSumMetric] = weightSum,
                [DroppedMetric] = dropped,
                [ProtocolBytesMetric] = protocolBytes,
                [ProtocolSecondsMetric] = seconds,
            };
            if (losses.Count > 0) metrics["train_loss"] = losses.Average();
            return aggregate with { ClientId = SecureAggregate.ClientId, Metrics = metrics };
        }
        finally
        {
            AdapterTensors.Dispose(delta);
        }
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> SnapshotState() => inner.SnapshotState();

    /// <inheritdoc/>
    public void RestoreState(IReadOnlyDictionary<string, Tensor> state) => inner.RestoreState(state);

    /// <summary>The inner executor's bytes when it measured them; else the adapter sent to each sampled client plus the
    /// protocol's messages down, and the protocol's messages up (the masked inputs among them) in place of the updates.</summary>
    public (long Sent, long Received)? MeasuredTraffic(int round)
    {
        if (!traffic.TryGetValue(round, out var own)) return inner.MeasuredTraffic(round);
        return inner.MeasuredTraffic(round) is { } measured ? (measured.Sent + own.Sent, measured.Received + own.Received) : own;
    }

    /// <summary>Disposes the inner executor if it is disposable.</summary>
    public void Dispose() => (inner as IDisposable)?.Dispose();
}
