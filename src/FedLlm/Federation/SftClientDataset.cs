using FedLlm.Data;
using FedLlm.Modeling;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>A client's instruction examples, trained with the causal-LM loss on the response tokens (<see cref="LocalTrainer"/>).</summary>
public sealed class SftClientDataset(IReadOnlyList<SftExample> examples, int padTokenId) : IClientDataset
{
    public IReadOnlyList<SftExample> Examples { get; } = examples;

    public int Count => Examples.Count;

    public ILocalRun StartRun(LlamaForCausalLM model, TrainingOptions options) => new Run(new LocalTrainer(model, options, padTokenId), Examples);

    /// <summary>Pools several clients' examples (the centralised baseline's data).</summary>
    public static SftClientDataset Pool(IEnumerable<SftClientDataset> clients, int padTokenId) =>
        new(clients.SelectMany(c => c.Examples).ToList(), padTokenId);

    sealed class Run(LocalTrainer trainer, IReadOnlyList<SftExample> examples) : ILocalRun
    {
        public AdamW Optimizer => trainer.Optimizer;
        public Func<Tensor>? ExtraLoss { get => trainer.ExtraLoss; set => trainer.ExtraLoss = value; }
        public Action<double>? AfterOptimizerStep { get => trainer.AfterOptimizerStep; set => trainer.AfterOptimizerStep = value; }

        public IReadOnlyDictionary<string, double> Train(CancellationToken cancellationToken = default)
        {
            trainer.Train(examples, cancellationToken: cancellationToken);
            return new Dictionary<string, double>
            {
                ["train_loss"] = trainer.StepLosses.Average(),
                ["train_loss_last"] = trainer.StepLosses[^1],
            };
        }

        public void Dispose() => trainer.Dispose();
    }
}
