using FedLlm.Data;
using FedLlm.Modeling;
using FedLlm.Runtime;

namespace FedLlm.Training;

/// <summary>A client's instruction examples, trained with the causal-LM loss on the response tokens (<see cref="LocalTrainer"/>).</summary>
public sealed class SftClientDataset(IReadOnlyList<SftExample> examples, int padTokenId) : IClientDataset
{
    /// <summary>The client's tokenized instruction examples.</summary>
    public IReadOnlyList<SftExample> Examples { get; } = examples;

    /// <inheritdoc/>
    public int Count => Examples.Count;

    /// <inheritdoc/>
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

    /// <summary>"loss": the mean causal-LM loss per response token over every example.</summary>
    public IReadOnlyDictionary<string, double> Evaluate(LlamaForCausalLM model, int batchSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        var collator = new SftCollator(padTokenId);
        bool wasTraining = model.training;
        model.eval();
        using var noGrad = TorchSharp.torch.no_grad();
        double sum = 0;
        long count = 0;
        try
        {
            foreach (var chunk in Examples.Chunk(batchSize))
            {
                using var scope = TorchSharp.torch.NewDisposeScope();
                var batch = collator.Collate(chunk);
                if (batch.LossTokenCount == 0) continue;
                var ids = TorchSharp.torch.tensor(batch.InputIds, batch.Shape, device: model.Device);
                var labels = TorchSharp.torch.tensor(batch.Labels, batch.Shape, device: model.Device);
                using var logits = model.Forward(ids);
                sum += LlamaForCausalLM.CausalLmLoss(logits, labels).ToScalarDouble() * batch.LossTokenCount;
                count += batch.LossTokenCount;
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return new Dictionary<string, double> { ["loss"] = count > 0 ? sum / count : double.NaN };
    }

    /// <summary>Pools several clients' examples (the centralised baseline's data).</summary>
    public static SftClientDataset Pool(IEnumerable<SftClientDataset> clients, int padTokenId) =>
        new(clients.SelectMany(c => c.Examples).ToList(), padTokenId);
}
