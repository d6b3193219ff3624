using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Strategies;

/// <summary>FedAdam: v ← β2·v + (1 − β2)·Δ² (OpenFedLLM mode: m² in place of Δ²).</summary>
/// <remarks>
/// Reddi et al., "Adaptive Federated Optimization", ICLR 2021 (arXiv:2003.00295), Algorithm 2, FedAdam line, without
/// Adam's bias correction, as in the paper. The shared steps are in <see cref="FedOpt"/>.
/// </remarks>
public sealed class FedAdam : FedOpt
{
    /// <summary>Creates FedAdam from the shared FedOpt options.</summary>
    public FedAdam(StrategyOptions options) : base(options) { }

    /// <inheritdoc/>
    public override string Name => "fedadam";

    /// <summary>An exponential average of the squares.</summary>
    protected override Tensor SecondMoment(Tensor previous, Tensor squared)
    {
        using var beta2 = Options.Beta2.ToScalar(); // named scalars: see Runtime.Scalars
        using var oneMinusBeta2 = (1 - Options.Beta2).ToScalar();
        using var decayed = previous.mul(beta2);
        return decayed.add(squared, oneMinusBeta2);
    }
}
