using FedLlm.Modeling;
using FedLlm.Training;

namespace FedLlm.Alignment;

/// <summary>
/// A client's preference pairs, trained with DPO (<see cref="DpoTrainer"/>). The client keeps one
/// <see cref="ReferenceLogProbCache"/> for all its rounds: π_ref is frozen, so each pair's reference log-probabilities
/// are computed once, before the client's first round, and reused by every later round.
/// </summary>
public sealed class DpoClientDataset : IClientDataset, IDisposable
{
    private readonly DpoOptions dpo;
    private readonly int padTokenId;

    /// <param name="reference">The reference policy, shared by all clients and not owned here (null = the base model).</param>
    /// <param name="pairs">The client's preference pairs, tokenized.</param>
    /// <param name="dpo">β and label smoothing (validated here).</param>
    /// <param name="padTokenId">The tokenizer's padding id, for batching.</param>
    public DpoClientDataset(IReadOnlyList<PreferencePair> pairs, DpoOptions dpo, int padTokenId, ReferencePolicy? reference = null)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        dpo.Validate();
        Pairs = pairs;
        this.dpo = dpo;
        this.padTokenId = padTokenId;
        Reference = new ReferenceLogProbCache(reference, ownsPolicy: false);
    }

    /// <summary>The client's preference pairs.</summary>
    public IReadOnlyList<PreferencePair> Pairs { get; }

    /// <summary>This client's reference values (filled lazily; <see cref="ReferenceLogProbCache.PairsComputed"/> counts the passes).</summary>
    public ReferenceLogProbCache Reference { get; }

    /// <inheritdoc/>
    public int Count => Pairs.Count;

    /// <inheritdoc/>
    /// <remarks>Computes every missing reference value of the client's pairs first, in fixed batches, so the values do
    /// not depend on how rounds batch the pairs.</remarks>
    public LocalRun StartRun(LlamaForCausalLM model, TrainingOptions options)
    {
        // All of the client's reference values at once, in fixed batches of its whole list (TRL's precompute_ref_log_probs):
        // a pair's value then never depends on which other pairs a round happened to batch it with, so a client that
        // restarts (and recomputes) gets bit-identical values and a resumed federation the same adapter.
        if (Reference.Count < Pairs.Count)
            Reference.Get(model, Pairs, Enumerable.Range(0, Pairs.Count).ToList(), new PreferenceCollator(padTokenId), options.BatchSize, options.LossChunkTokens);
        // The cache belongs to the client, not to one round's trainer (DpoTrainer does not dispose a cache it was given).
        var trainer = new DpoTrainer(model, options, dpo, padTokenId, Reference);
        return new LocalRun(trainer, cancellationToken =>
        {
            trainer.Train(Pairs, cancellationToken: cancellationToken);
            var round = trainer.AggregatedMetrics!;
            return new Dictionary<string, double>
            {
                ["train_loss"] = round.Loss,
                ["train_loss_last"] = trainer.StepMetrics[^1].Loss,
                ["train_reward_margin"] = round.RewardsMargin,
                ["train_reward_accuracy"] = round.RewardsAccuracy,
            };
        });
    }

    /// <summary>Pools several clients' pairs (the centralised baseline's data), with a cache of its own.</summary>
    public static DpoClientDataset Pool(IEnumerable<DpoClientDataset> clients, DpoOptions dpo, int padTokenId, ReferencePolicy? reference = null) =>
        new(clients.SelectMany(c => c.Pairs).ToList(), dpo, padTokenId, reference);

    /// <summary>"dpo_loss" and "reward_accuracy" of the loaded adapter on this client's pairs.</summary>
    public IReadOnlyDictionary<string, double> Evaluate(LlamaForCausalLM model, int batchSize)
    {
        var metrics = PreferenceEvaluation.Evaluate(model, Pairs, Reference, dpo, padTokenId, batchSize);
        return new Dictionary<string, double> { ["dpo_loss"] = metrics.Loss, ["reward_accuracy"] = metrics.RewardsAccuracy };
    }

    /// <summary>Frees the cached reference values (not the shared reference policy).</summary>
    public void Dispose() => Reference.Dispose();
}
