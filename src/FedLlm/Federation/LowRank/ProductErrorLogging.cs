using static TorchSharp.torch;

namespace FedLlm.Federation.LowRank;

/// <summary>
/// Measures, every round, how far averaging LoRA's A and B separately (FedAvg on the factors, OpenFedLLM's rule) lands
/// from the example-weighted mean of the clients' products B_i·A_i, and adds it to the round's record as
/// <see cref="MetricName"/>; aggregation itself is the inner strategy's, unchanged.
/// </summary>
/// <remarks>The figure is <see cref="LoraProducts.SeparateAveragingError"/> of the round's client adapters y_i with
/// p_i = n_i/Σn: ‖avg(B)·avg(A) − avg(B·A)‖_F / ‖avg(B·A)‖_F over the whole adapter. Sun, Li, Wang, Ding, Zhao (FFA-LoRA,
/// ICLR 2024) and Wang et al. (FLoRA, NeurIPS 2024) name this gap as the noise that separate averaging adds.</remarks>
public sealed class ProductErrorLogging(IFederatedStrategy inner) : DelegatingStrategy(inner)
{
    /// <summary>The metric's name in <see cref="RoundRecord.AggregationMetrics"/>.</summary>
    public const string MetricName = "lora_separate_averaging_error";

    double? lastError;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        var aggregated = base.Aggregate(round, global, updates); // validates the updates first
        lastError = LoraProducts.SeparateAveragingError(updates.Select(u => u.Weights).ToList(),
            LoraProducts.ExampleWeights(updates.Select(u => u.ExampleCount).ToList()));
        return aggregated;
    }

    /// <inheritdoc/>
    public override RoundRecord Annotate(RoundRecord record)
    {
        record = base.Annotate(record);
        if (lastError is not { } error || !double.IsFinite(error)) return record; // a zero mean product has no relative error
        lastError = null;
        return AggregationMetrics.With(record, new Dictionary<string, double> { [MetricName] = error });
    }
}
