using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Strategies;

/// <summary>FedYogi: v ← v − (1 − β2)·Δ²·sign(v − Δ²) (OpenFedLLM mode: m² in place of Δ²).</summary>
/// <remarks>
/// Reddi et al., "Adaptive Federated Optimization", ICLR 2021 (arXiv:2003.00295), Algorithm 2, FedYogi line; Yogi
/// itself is Zaheer et al., NeurIPS 2018. The shared steps are in <see cref="FedOpt"/>.
/// </remarks>
public sealed class FedYogi : FedOpt
{
    /// <summary>Creates FedYogi from the shared FedOpt options.</summary>
    public FedYogi(StrategyOptions options) : base(options) { }

    /// <inheritdoc/>
    public override string Name => "fedyogi";

    /// <summary>Yogi moves v additively towards the new square, by at most (1 − β2)·square, so that v cannot collapse
    /// after one large round as Adam's multiplicative decay lets it.</summary>
    protected override Tensor SecondMoment(Tensor previous, Tensor squared)
    {
        using var oneMinusBeta2 = (1 - Options.Beta2).ToScalar(); // named scalars: see Runtime.Scalars
        using var gap = previous - squared;
        using var direction = gap.sign_();
        using var step = squared.mul(direction).mul_(oneMinusBeta2);
        return previous - step;
    }
}
