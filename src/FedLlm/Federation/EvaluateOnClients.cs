namespace FedLlm.Federation;

/// <summary>
/// Adds federated evaluation to any strategy (Flower's fraction_evaluate): every <see cref="Every"/> rounds, and after
/// the last, the round's clients score the new global adapter on their own data, and the inner strategy combines their
/// metrics (<see cref="IFederatedStrategy.AggregateEvaluate"/>; the example-weighted mean by default).
/// </summary>
public sealed class EvaluateOnClients : DelegatingStrategy
{
    readonly int rounds;

    /// <summary>Wraps <paramref name="innerStrategy"/>; <paramref name="rounds"/> is the run's number of rounds.</summary>
    public EvaluateOnClients(IFederatedStrategy innerStrategy, int every, int rounds) : base(innerStrategy)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(every);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rounds);
        Every = every;
        this.rounds = rounds;
    }

    /// <summary>Evaluate every this many rounds.</summary>
    public int Every { get; }

    /// <inheritdoc/>
    public override ClientInstructions? ConfigureEvaluate(int round) =>
        (round + 1) % Every == 0 || round + 1 == rounds ? new ClientInstructions(round, 0) : InnerStrategy.ConfigureEvaluate(round);
}
