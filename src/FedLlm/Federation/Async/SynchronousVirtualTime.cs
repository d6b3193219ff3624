namespace FedLlm.Federation.Async;

/// <summary>
/// Gives a synchronous run the virtual time of the asynchronous one it is compared with: round r lasts as long as its
/// slowest sampled client, max_{i∈S_r} f_i × local steps, because the round waits for every update; the record's
/// <see cref="RoundRecord.VirtualTime"/> is the sum over rounds 1 … r. Rounds are re-sampled from the strategy's own
/// (seeded) sampling, so the decorator keeps no state and a resumed run gets the same times.
/// </summary>
public sealed class SynchronousVirtualTime : DelegatingStrategy
{
    readonly FederationOptions options;
    readonly IReadOnlyList<double> speeds;

    /// <param name="innerStrategy">The synchronous algorithm whose rounds get a virtual time.</param>
    /// <param name="options">The federation (local steps give a task's length).</param>
    /// <param name="speeds">f_i per client (<see cref="AsyncOptions.SpeedsFor"/>).</param>
    public SynchronousVirtualTime(IFederatedStrategy innerStrategy, FederationOptions options, IReadOnlyList<double> speeds) : base(innerStrategy)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(speeds);
        if (speeds.Count != options.TotalClients) throw new ArgumentException($"{speeds.Count} speed factors for {options.TotalClients} clients", nameof(speeds));
        this.options = options;
        this.speeds = speeds;
    }

    /// <summary>The virtual time at the end of round <paramref name="round"/> (0-based).</summary>
    public double TimeAfter(int round)
    {
        double time = 0;
        for (int r = 0; r <= round; r++) time += InnerStrategy.SampleClients(r, options).Max(i => speeds[i]) * options.LocalSteps;
        return time;
    }

    /// <inheritdoc/>
    public override RoundRecord Annotate(RoundRecord record) => base.Annotate(record) with { VirtualTime = TimeAfter(record.Round) };
}
