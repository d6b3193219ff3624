namespace FedLlm.Federation.Async;

/// <summary>
/// How much an update that started from an older global adapter counts: s(τ) for staleness τ, the number of global
/// versions committed since the client's base version (τ = 0 for an update computed on the newest global).
/// </summary>
/// <remarks>
/// The three functions of FedAsync (Xie, Koyejo, Gupta, "Asynchronous Federated Optimization", OPT 2020,
/// arXiv:1903.03934, §5.2), which FedBuff reuses (Nguyen et al., "Federated Learning with Buffered Asynchronous
/// Aggregation", AISTATS 2022, arXiv:2106.06639, §3: s(τ) = 1/√(1+τ) in its experiments). Each is 1 at τ = 0 and
/// never increases with τ.
/// </remarks>
public interface IStalenessWeight
{
    /// <summary>The name as run.yaml writes it (constant, polynomial, hinge).</summary>
    string Name { get; }

    /// <summary>s(τ) for <paramref name="staleness"/> τ ≥ 0.</summary>
    double Weight(int staleness);
}
