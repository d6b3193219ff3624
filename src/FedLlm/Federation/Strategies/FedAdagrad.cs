using static TorchSharp.torch;

namespace FedLlm.Federation.Strategies;

/// <summary>FedAdagrad: v ← v + Δ² (OpenFedLLM mode: v ← v + m², and no momentum, m ← Δ).</summary>
/// <remarks>
/// Reddi et al., "Adaptive Federated Optimization", ICLR 2021 (arXiv:2003.00295), Algorithm 2, FedAdagrad line. The
/// shared steps are in <see cref="FedOpt"/>. OpenFedLLM's own FedAdagrad cannot run (its client whitelist spells it
/// "fedadgrad"); its server rule, reproduced here in OpenFedLLM mode, sets m ← Δ every round.
/// </remarks>
public sealed class FedAdagrad : FedOpt
{
    /// <summary>Creates FedAdagrad from the shared FedOpt options (β2 is not used).</summary>
    public FedAdagrad(StrategyOptions options) : base(options) { }

    /// <inheritdoc/>
    public override string Name => "fedadagrad";

    /// <inheritdoc/>
    protected override bool OpenFedLlmKeepsMomentum => false;

    /// <summary>Adagrad accumulates squares without decay, so its steps shrink as v grows.</summary>
    protected override Tensor SecondMoment(Tensor previous, Tensor squared) => previous.add(squared, Runtime.Scalars.One);
}
