using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Federation.SecureAggregation;

/// <summary>
/// Secure aggregation around any strategy that needs only the (weighted) mean of the round's updates: the instructions
/// carry the protocol's settings, the executor (<see cref="SecureAggregationClients"/>) delivers one secure aggregate
/// instead of the individual updates, and the inner strategy runs its step on that (FedAvg, FedAvgM, FedOpt, FedProx;
/// client-side DP clipping adds its noise to the secure sum).
/// </summary>
/// <remarks>
/// <para>Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning", CCS 2017; Bell et al.,
/// "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS 2020 (SecAgg+, the sparse neighbour graph).
/// The structure follows Flower's SecAggPlusWorkflow and secaggplus_mod.</para>
/// <para>Refused: algorithms that need per-client tensor sets (SCAFFOLD's control deltas), and any aggregation that
/// must see individual updates (robust rules, server-side DP clipping); the run options check these up front.</para>
/// </remarks>
public sealed class SecureAggregationStrategy : DelegatingStrategy
{
    readonly int clientsPerRound;
    RoundSecureAggregation? last;

    /// <summary>Wraps <paramref name="innerStrategy"/> for rounds of <paramref name="clientsPerRound"/> clients.</summary>
    public SecureAggregationStrategy(IFederatedStrategy innerStrategy, SecureAggregationOptions options, int clientsPerRound)
        : base(innerStrategy)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = options.Failures(new FederationOptions { TotalClients = clientsPerRound, ClientsPerRound = clientsPerRound });
        if (failures.Count > 0) throw new ArgumentException(string.Join("; ", failures), nameof(options));
        Options = options;
        this.clientsPerRound = clientsPerRound;
    }

    /// <summary>The settings.</summary>
    public SecureAggregationOptions Options { get; }

    /// <inheritdoc/>
    public override ClientInstructions ConfigureTrain(int round, double learningRate)
    {
        var inner = InnerStrategy.ConfigureTrain(round, learningRate);
        if (inner.ReturnedTensorSets.Count > 0)
        {
            inner.DisposeTensors();
            throw new InvalidOperationException($"{InnerStrategy.Name} needs per-client tensor sets back ({string.Join(", ", inner.ReturnedTensorSets)}), which secure aggregation cannot deliver");
        }
        var config = new Dictionary<string, string>(inner.Config, StringComparer.Ordinal);
        foreach (var (key, value) in Options.ToConfig(clientsPerRound))
            if (!config.TryAdd(key, value)) throw new InvalidOperationException($"secure aggregation: the inner strategy already sets instruction key '{key}'");
        return inner with { Config = config };
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        ArgumentNullException.ThrowIfNull(updates);
        if (!SecureAggregate.Is(updates))
            throw new AggregationException($"round {round}: secure aggregation expects the executor's one secure aggregate, got {updates.Count} updates ({string.Join(", ", updates.Select(u => u.ClientId).Take(5))}); run the clients through SecureAggregationClients");
        var metrics = updates[0].Metrics ?? new Dictionary<string, double>();
        var next = InnerStrategy.Aggregate(round, global, updates);
        last = new RoundSecureAggregation(
            (int)metrics.GetValueOrDefault(SecureAggregate.ClientsMetric), (int)metrics.GetValueOrDefault(SecureAggregationClients.DroppedMetric),
            Options.ResolvedThreshold(clientsPerRound), Options.Neighbours, Options.QuantisationBits, Options.QuantisationRange,
            (long)metrics.GetValueOrDefault(SecureAggregationClients.ProtocolBytesMetric), metrics.GetValueOrDefault(SecureAggregationClients.ProtocolSecondsMetric));
        return next;
    }

    /// <inheritdoc/>
    public override RoundRecord Annotate(RoundRecord record) => InnerStrategy.Annotate(record) with { SecureAggregation = last };
}
