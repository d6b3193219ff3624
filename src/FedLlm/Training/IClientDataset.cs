using FedLlm.Modeling;

namespace FedLlm.Training;

/// <summary>
/// A client's local data together with the objective it is trained on: instruction tuning (<see cref="SftClientDataset"/>)
/// or preference alignment (Alignment.DpoClientDataset). The federated client, the simulation and its baselines see only
/// this, so every strategy runs every task through the same round logic.
/// </summary>
public interface IClientDataset
{
    /// <summary>n_i: the examples (or preference pairs) the client holds — the aggregation weight of its update.</summary>
    int Count { get; }

    /// <summary>Starts local training of the model's LoRA adapters on this data; the caller disposes the run.</summary>
    LocalRun StartRun(LlamaForCausalLM model, TrainingOptions options);

    /// <summary>Scores the adapter loaded in <paramref name="model"/> on this data (eval mode, no gradients), for federated
    /// evaluation; null when the objective has no evaluation of its own.</summary>
    IReadOnlyDictionary<string, double>? Evaluate(LlamaForCausalLM model, int batchSize) => null;
}

/// <summary>One local training run: a trainer, whose hooks a federated algorithm sets, and what trains it on the client's data.</summary>
/// <param name="train">Trains to MaxSteps and returns the run's metrics: always "train_loss" (mean over steps) and
/// "train_loss_last", plus the objective's own (DPO's reward margin and accuracy).</param>
/// <param name="trainer">The trainer of the run; the run owns and disposes it.</param>
public sealed class LocalRun(IAdapterTrainer trainer, Func<CancellationToken, IReadOnlyDictionary<string, double>> train) : IDisposable
{
    /// <summary>The trainer, whose hooks (extra loss terms, after-step actions) a federated algorithm sets before
    /// <see cref="Train"/>.</summary>
    public IAdapterTrainer Trainer => trainer;

    /// <summary>Trains to the options' MaxSteps and returns the run's metrics ("train_loss", "train_loss_last" and the
    /// objective's own).</summary>
    public IReadOnlyDictionary<string, double> Train(CancellationToken cancellationToken = default) => train(cancellationToken);

    /// <summary>Disposes the trainer and its optimizer state.</summary>
    public void Dispose() => trainer.Dispose();
}
