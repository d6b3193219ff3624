using FedLlm.Data;
using FedLlm.Modeling;

namespace FedLlm.Training;

/// <summary>A client's instruction examples, trained with the causal-LM loss on the response tokens (<see cref="LocalTrainer"/>).</summary>
public sealed class SftClientDataset(IReadOnlyList<SftExample> examples, int padTokenId) : IClientDataset
{
    public IReadOnlyList<SftExample> Examples { get; } = examples;

    public int Count => Examples.Count;

    public LocalRun StartRun(LlamaForCausalLM model, TrainingOptions options)
    {
        var trainer = new LocalTrainer(model, options, padTokenId);
        return new LocalRun(trainer, cancellationToken =>
        {
            trainer.Train(Examples, cancellationToken: cancellationToken);
            return new Dictionary<string, double>
            {
                ["train_loss"] = trainer.StepLosses.Average(),
                ["train_loss_last"] = trainer.StepLosses[^1],
            };
        });
    }

    /// <summary>Pools several clients' examples (the centralised baseline's data).</summary>
    public static SftClientDataset Pool(IEnumerable<SftClientDataset> clients, int padTokenId) =>
        new(clients.SelectMany(c => c.Examples).ToList(), padTokenId);
}
