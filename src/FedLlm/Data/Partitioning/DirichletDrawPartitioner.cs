using FedLlm.Runtime;

namespace FedLlm.Data.Partitioning;

/// <summary>
/// What the two Dirichlet partitioners share: the concentration α, a minimum of examples per client, and the loop that
/// redraws (continuing the same seeded stream, so the result stays a function of the seed) until every client has it.
/// </summary>
public abstract class DirichletDrawPartitioner : IPartitioner
{
    /// <param name="alpha">Concentration α &gt; 0.</param>
    /// <param name="minExamplesPerClient">Redraw until every client holds at least this many examples.</param>
    /// <param name="maxAttempts">Give up after this many draws.</param>
    private protected DirichletDrawPartitioner(double alpha, int minExamplesPerClient, int maxAttempts)
    {
        if (!(alpha > 0) || double.IsInfinity(alpha)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must be a positive finite number.");
        ArgumentOutOfRangeException.ThrowIfNegative(minExamplesPerClient);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxAttempts);
        Alpha = alpha;
        MinExamplesPerClient = minExamplesPerClient;
        MaxAttempts = maxAttempts;
    }

    /// <summary>The concentration α.</summary>
    public double Alpha { get; }

    /// <summary>The fewest examples a client may end with.</summary>
    public int MinExamplesPerClient { get; }

    /// <summary>How many draws are tried before giving up.</summary>
    public int MaxAttempts { get; }

    /// <inheritdoc />
    public abstract string Description { get; }

    /// <inheritdoc />
    public abstract bool UsesLabels { get; }

    /// <summary>What one draw draws, for the error message ("draw", "size draw").</summary>
    private protected abstract string DrawName { get; }

    /// <summary>Prepares the draws (it may consume <paramref name="rng"/>) and returns one draw: every client's example indices.</summary>
    private protected abstract Func<int[][]> Drawer(IReadOnlyList<string?> labels, int clientCount, SplitMix64 rng);

    /// <summary>Runs once on the accepted draw (e.g. to mix labels within each client).</summary>
    private protected virtual void Finish(int[][] clients, SplitMix64 rng)
    {
    }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">No draw in <see cref="MaxAttempts"/> gave every client the minimum.</exception>
    public ClientPartition Partition(IReadOnlyList<string?> labels, int clientCount, ulong seed)
    {
        PartitionerInput.Check(labels, clientCount);
        if ((long)MinExamplesPerClient * clientCount > labels.Count)
            throw new ArgumentException($"{labels.Count} examples cannot give {clientCount} clients {MinExamplesPerClient} each.", nameof(labels));
        var rng = new SplitMix64(seed);
        var draw = Drawer(labels, clientCount, rng);
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            var clients = draw();
            if (clients.All(c => c.Length >= MinExamplesPerClient))
            {
                Finish(clients, rng);
                return new ClientPartition(clients, labels.Count);
            }
        }

        throw new InvalidOperationException(
            $"No Dirichlet(α={Alpha}) {DrawName} in {MaxAttempts} gave each of {clientCount} clients at least {MinExamplesPerClient} of {labels.Count} examples; " +
            "use fewer clients, a larger α or a smaller minimum.");
    }
}
