using static TorchSharp.torch;

namespace FedLlm.Training;

/// <summary>What every trainer of LoRA adapters (instruction tuning, DPO) offers a federated algorithm: its optimizer and
/// three hooks.</summary>
public interface IAdapterTrainer : IDisposable
{
    /// <summary>The optimizer, whose state can be checkpointed, restored, kept from round to round or reset.</summary>
    AdamW Optimizer { get; }

    /// <summary>An extra differentiable term added to the loss (FedProx's proximal term), or null.</summary>
    Func<Tensor>? ExtraLoss { get; set; }

    /// <summary>Runs after every optimizer step with that step's learning rate (SCAFFOLD's drift correction), or null.</summary>
    Action<double>? AfterOptimizerStep { get; set; }

    /// <summary>Runs once per step when the step's gradients are complete, before clipping and the optimizer step
    /// (FLoRA's freezing of part of the adapter), or null.</summary>
    Action? BeforeGradientClip { get; set; }
}
