using FedLlm.Modeling;
using static TorchSharp.torch;

namespace FedLlm.Alignment;

/// <summary>
/// Reference log-probabilities log π_ref(y_w|x) and log π_ref(y_l|x), computed once per pair and kept by the pair's
/// index in its list.
/// </summary>
/// <remarks>
/// π_ref never changes during DPO (the base weights are frozen, and a named reference adapter is a frozen copy), so one
/// reference pass per pair suffices for the whole run, also across federated rounds: a client keeps its cache and hands
/// it to each round's trainer. Each entry remembers the pair object it was computed for, so a lookup with a different
/// list at the same index recomputes instead of returning another pair's numbers. Values are computed lazily, in
/// batches, for the indices a step actually needs. Owns its <see cref="ReferencePolicy"/>. Not thread-safe.
/// </remarks>
public sealed class ReferenceLogProbCache : IDisposable
{
    private readonly Dictionary<int, (PreferencePair Pair, double Chosen, double Rejected)> entries = new();

    private readonly bool ownsPolicy;

    /// <summary>Creates an empty cache for <paramref name="policy"/> (default: the base model, adapters off).</summary>
    /// <param name="ownsPolicy">Dispose the policy with the cache; false when several caches (a federation's clients)
    /// share one reference adapter, so that it is held in memory once.</param>
    /// <param name="policy">The reference policy π_ref; null = the base model with adapters off.</param>
    public ReferenceLogProbCache(ReferencePolicy? policy = null, bool ownsPolicy = true)
    {
        Policy = policy ?? ReferencePolicy.BaseModel();
        this.ownsPolicy = ownsPolicy || policy is null;
    }

    /// <summary>The reference policy the values belong to.</summary>
    public ReferencePolicy Policy { get; }

    /// <summary>Pairs with a cached value.</summary>
    public int Count => entries.Count;

    /// <summary>Pairs sent through the reference pass so far (equals <see cref="Count"/> unless entries were replaced).</summary>
    public long PairsComputed { get; private set; }

    /// <summary>The reference log-probabilities of <paramref name="indices"/> into <paramref name="pairs"/>, computing missing ones.</summary>
    /// <param name="batchSize">Pairs per reference forward pass (2× as many sequences).</param>
    /// <param name="model">The model the reference policy runs on.</param>
    /// <param name="pairs">The pair list the indices refer to; the cache is keyed by index, so always pass the same
    /// list.</param>
    /// <param name="indices">The pairs wanted.</param>
    /// <param name="collator">Pads the pairs into batches.</param>
    /// <param name="chunkTokens">Labelled rows projected onto the vocabulary at once.</param>
    public (double[] Chosen, double[] Rejected) Get(LlamaForCausalLM model, IReadOnlyList<PreferencePair> pairs,
        IReadOnlyList<int> indices, PreferenceCollator collator, int batchSize, int chunkTokens)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        ArgumentNullException.ThrowIfNull(indices);
        ArgumentNullException.ThrowIfNull(collator);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        var missing = indices.Distinct()
            .Where(i => !entries.TryGetValue(i, out var e) || !ReferenceEquals(e.Pair, pairs[i]))
            .ToList();
        if (missing.Count > 0)
        {
            Policy.Run(model, () =>
            {
                foreach (var chunk in missing.Chunk(batchSize))
                {
                    using var scope = NewDisposeScope();
                    var batch = collator.Collate(chunk.Select(i => pairs[i]).ToList());
                    var logProbs = SequenceLogProbs.Compute(model, tensor(batch.InputIds, batch.Shape, device: model.Device),
                        tensor(batch.Labels, batch.Shape, device: model.Device), chunkTokens);
                    for (int k = 0; k < chunk.Length; k++)
                        entries[chunk[k]] = (pairs[chunk[k]], logProbs[k], logProbs[chunk.Length + k]);
                    PairsComputed += chunk.Length;
                }
                return 0;
            });
        }
        var chosen = new double[indices.Count];
        var rejected = new double[indices.Count];
        for (int k = 0; k < indices.Count; k++) (_, chosen[k], rejected[k]) = entries[indices[k]];
        return (chosen, rejected);
    }

    /// <summary>Forgets every value (after the base model or the reference adapter changed).</summary>
    public void Clear() => entries.Clear();

    /// <summary>Disposes the policy's copied adapter state, if the cache owns the policy.</summary>
    public void Dispose()
    {
        if (ownsPolicy) Policy.Dispose();
    }
}
