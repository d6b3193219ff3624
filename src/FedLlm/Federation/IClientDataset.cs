using FedLlm.Modeling;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Federation;

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
    ILocalRun StartRun(LlamaForCausalLM model, TrainingOptions options);
}

/// <summary>One local training run: the hooks a federated algorithm needs, and the run itself.</summary>
public interface ILocalRun : IDisposable
{
    /// <summary>The run's optimizer, whose moments a client may keep from round to round.</summary>
    AdamW Optimizer { get; }

    /// <summary>An extra differentiable term added to each step's loss (FedProx's proximal term), or null.</summary>
    Func<Tensor>? ExtraLoss { get; set; }

    /// <summary>Runs after every optimizer step with that step's learning rate (SCAFFOLD's drift correction), or null.</summary>
    Action<double>? AfterOptimizerStep { get; set; }

    /// <summary>Trains to <see cref="TrainingOptions.MaxSteps"/>; returns the run's metrics: always "train_loss" (mean over
    /// steps) and "train_loss_last", plus the objective's own (DPO's reward margin and accuracy).</summary>
    IReadOnlyDictionary<string, double> Train(CancellationToken cancellationToken = default);
}
