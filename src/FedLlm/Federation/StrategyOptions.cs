namespace FedLlm.Federation;

/// <summary>
/// Hyperparameters of the server strategies, with the papers' defaults. One record serves all seven algorithms; each
/// reads only its own fields.
/// </summary>
public sealed record StrategyOptions
{
    /// <summary>The server learning rate η of FedAdagrad/FedYogi/FedAdam when <see cref="ServerLearningRate"/> is unset:
    /// 1e-3, the value OpenFedLLM ships (fedopt_eta).</summary>
    public const double DefaultFedOptServerLearningRate = 1e-3;

    /// <summary>The server learning rate η_s of FedAvgM when <see cref="ServerLearningRate"/> is unset: 1.0, with which
    /// the first FedAvgM round equals FedAvg (Hsu et al., 2019).</summary>
    public const double DefaultFedAvgMServerLearningRate = 1.0;

    /// <summary>FedProx's μ (Li et al., 2020): weight of the proximal term (μ/2)·‖w − w_global‖²; 0.01 as OpenFedLLM's prox_mu.</summary>
    public double ProximalMu { get; init; } = 0.01;

    /// <summary>Server learning rate η for FedAvgM and the FedOpt family; null = the algorithm's own default
    /// (<see cref="DefaultFedOptServerLearningRate"/>, <see cref="DefaultFedAvgMServerLearningRate"/>), because one
    /// number cannot be right for both.</summary>
    public double? ServerLearningRate { get; init; }

    /// <summary>FedAvgM's server momentum β (Hsu et al., 2019); 0.9, which is also OpenFedLLM's fedopt_beta1 that its
    /// FedAvgM reads.</summary>
    public double ServerMomentum { get; init; } = 0.9;

    /// <summary>β1 of FedAdagrad/FedYogi/FedAdam: decay of the first moment m (Reddi et al., 2021). Set 0 for the
    /// momentum-free FedAdagrad of Flower and of OpenFedLLM.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>β2 of FedYogi/FedAdam: decay of the second moment v. FedAdagrad ignores it (its v only grows).</summary>
    public double Beta2 { get; init; } = 0.99;

    /// <summary>τ, the adaptivity floor of the FedOpt family: x ← x + η·m/(√v + τ), and v starts at τ².</summary>
    public double Tau { get; init; } = 1e-3;

    /// <summary>
    /// Scale the server learning rate of FedAvgM and the FedOpt family each round by the clients' schedule:
    /// η_r = η · lr_r / lr₀, with lr_r the round's client learning rate (the cosine over rounds) and lr₀ =
    /// <see cref="ClientPeakLearningRate"/>. FedOpt's normalised step m/(√v + τ) does not shrink as the clients' steps
    /// do, so without this a rate that suits the first rounds overshoots the last ones (docs/server-optimizers.md).
    /// Off by default, as in the papers.
    /// </summary>
    public bool DecayServerLearningRate { get; init; }

    /// <summary>lr₀, the clients' first-round learning rate that <see cref="DecayServerLearningRate"/> divides by;
    /// 0 = unknown (then the decay is refused).</summary>
    public double ClientPeakLearningRate { get; init; }

    /// <summary>The factor on the server learning rate in a round whose clients train at <paramref name="clientLearningRate"/>:
    /// lr_r / lr₀ with <see cref="DecayServerLearningRate"/>, else 1.</summary>
    public double ServerLearningRateScale(double clientLearningRate) =>
        DecayServerLearningRate ? clientLearningRate / ClientPeakLearningRate : 1.0;
    /// <summary>Ditto's λ (Li, Hu, Beirami, Smith, ICML 2021): weight of (λ/2)·‖v − w‖² that ties each client's
    /// personal adapter v to the global w; 0.1, a middle value of the paper's grid {0.01, 0.1, 1, 2}.</summary>
    public double DittoLambda { get; init; } = 0.1;

    /// <summary>Each client's LoRA rank budget r_i by client index (heterogeneous ranks), or empty when every client trains
    /// the global rank; a network client's own declared rank wins over its entry.</summary>
    public IReadOnlyList<int> ClientRanks { get; init; } = [];

    /// <summary>N, the number of all clients (sampled or not). SCAFFOLD needs it: c ← c + (1/N)·Σ_{i∈S} Δc_i.
    /// 0 = unknown, which only SCAFFOLD rejects.</summary>
    public int TotalClients { get; init; }

    /// <summary>
    /// Use OpenFedLLM's update rules (rui-ye/OpenFedLLM @14c6af2, federated_learning/fed_global.py) instead of the
    /// papers', to reproduce its published numbers. Off by default. What changes:
    /// <list type="bullet">
    /// <item>FedAvgM: m ← Δ in the first round, then m ← β·m + (1 − β)·Δ; x ← x + m (no server learning rate).</item>
    /// <item>FedAdagrad, FedYogi, FedAdam: Δ is the unweighted mean of (y_i − x) over the sampled clients; v is updated
    /// from m² instead of Δ²; m ← Δ in the first round (FedYogi, FedAdam) or always (FedAdagrad, no momentum).</item>
    /// <item>FedAvg, FedProx, SCAFFOLD: no server-side change (OpenFedLLM's match the defaults here).</item>
    /// </list>
    /// Unlike OpenFedLLM, whose "fedadgrad" typo makes FedAdagrad refuse to run, all seven run in both modes.
    /// "First round" means the first aggregation of a strategy without state, so a run resumed through
    /// <see cref="IFederatedStrategy.LoadState"/> behaves like the uninterrupted one whatever the round numbering.
    /// </summary>
    public bool OpenFedLlmCompatible { get; init; }

    /// <summary>Checks every field and throws one <see cref="ArgumentException"/> listing all failures, so a bad
    /// configuration fails before the first round with everything that is wrong with it.</summary>
    public void Validate()
    {
        var failures = new List<string>();
        if (!(ProximalMu >= 0) || double.IsInfinity(ProximalMu))
            failures.Add($"{nameof(ProximalMu)} must be finite and ≥ 0 (0 = no proximal term), got {ProximalMu}");
        if (ServerLearningRate is { } eta && (!(eta > 0) || double.IsInfinity(eta)))
            failures.Add($"{nameof(ServerLearningRate)} must be finite and positive, got {eta}");
        if (!(ServerMomentum is >= 0 and < 1))
            failures.Add($"{nameof(ServerMomentum)} must be in [0, 1), got {ServerMomentum}");
        if (!(Beta1 is >= 0 and < 1))
            failures.Add($"{nameof(Beta1)} must be in [0, 1), got {Beta1}");
        if (!(Beta2 is >= 0 and < 1))
            failures.Add($"{nameof(Beta2)} must be in [0, 1), got {Beta2}");
        if (!(Tau > 0) || double.IsInfinity(Tau))
            failures.Add($"{nameof(Tau)} must be finite and positive, got {Tau}");
        if (DecayServerLearningRate && !(ClientPeakLearningRate > 0))
            failures.Add($"{nameof(DecayServerLearningRate)} needs the clients' first-round learning rate ({nameof(ClientPeakLearningRate)} > 0), got {ClientPeakLearningRate}");
        if (!(DittoLambda >= 0) || double.IsInfinity(DittoLambda))
            failures.Add($"{nameof(DittoLambda)} must be finite and ≥ 0, got {DittoLambda}");
        foreach (int rank in ClientRanks)
            if (rank <= 0) failures.Add($"{nameof(ClientRanks)}: every rank must be positive, got {rank}");
        if (TotalClients < 0)
            failures.Add($"{nameof(TotalClients)} must be ≥ 0 (0 = unknown), got {TotalClients}");
        if (failures.Count > 0)
            throw new ArgumentException("invalid strategy options: " + string.Join("; ", failures));
    }
}
