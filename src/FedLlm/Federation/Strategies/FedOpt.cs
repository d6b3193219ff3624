using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Strategies;

/// <summary>
/// The adaptive server optimisers of Reddi et al. (FedAdagrad, FedYogi, FedAdam) share everything but the second
/// moment: the pseudo-gradient Δ = Σ p_i·(y_i − x), the first moment m ← β1·m + (1 − β1)·Δ, and the step
/// x ← x + η·m/(√v + τ). Subclasses supply only v's update.
/// </summary>
/// <remarks>
/// <para>Reddi, Charles, Zaheer, Garrett, Rush, Konečný, Kumar, McMahan, "Adaptive Federated Optimization", ICLR 2021
/// (arXiv:2003.00295), Algorithm 2. No bias correction, as in Algorithm 2. Initial state: m_{-1} = 0 and
/// v_{-1} = τ², the smallest value the paper allows (v_{-1} ≥ τ²) and the one OpenFedLLM uses, so that both modes
/// start alike.</para>
/// <para>Weighting (the one place the paper leaves room): Algorithm 2 writes Δ as the plain mean over the sampled
/// clients. FedLlm weights by example count, p_i = n_i / Σ n_j, by default: it is the weighting of FedAvg and of the
/// objective Σ (n_i/n)·F_i, so FedOpt differs from FedAvg only in the server step (x + Δ is exactly FedAvg's
/// result), and it is what Flower and TensorFlow Federated do. With equal shards, as
/// OpenFedLLM's IID split gives to within one example, the two rules agree.</para>
/// <para>With <see cref="StrategyOptions.OpenFedLlmCompatible"/> (OpenFedLLM's fed_global.py): Δ is the unweighted
/// mean; m ← Δ in the first round (FedAdagrad: in every round, no momentum); v is updated from m² instead of Δ².</para>
/// <para>State: m and v under keys "m/…" and "v/…". Arithmetic in float32 (float64 for float64 adapters).</para>
/// </remarks>
public abstract class FedOpt : IFederatedStrategy, IDisposable
{
    const string FirstMomentSlot = "m";
    const string SecondMomentSlot = "v";
    readonly ServerState state = new(FirstMomentSlot, SecondMomentSlot);
    double roundScale = 1.0; // this round's factor on η (the clients' schedule, when the decay is on)

    /// <summary>Reads β1, β2, τ, η (default <see cref="StrategyOptions.DefaultFedOptServerLearningRate"/>) and the
    /// OpenFedLLM switch from <paramref name="options"/>.</summary>
    protected FedOpt(StrategyOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        ServerLearningRate = options.ServerLearningRate ?? StrategyOptions.DefaultFedOptServerLearningRate;
    }

    /// <summary>The options this strategy was created with (β2 for the subclasses).</summary>
    protected StrategyOptions Options { get; }

    /// <summary>η, the server learning rate.</summary>
    public double ServerLearningRate { get; }

    /// <inheritdoc/>
    public abstract string Name { get; }

    /// <summary>Whether OpenFedLLM's variant keeps the momentum m ← β1·m + (1 − β1)·Δ after its first round (FedYogi
    /// and FedAdam do; its FedAdagrad sets m ← Δ every round).</summary>
    protected virtual bool OpenFedLlmKeepsMomentum => true;

    /// <summary>The second moment v_t from v_{t−1} and <paramref name="squared"/>, which is Δ² (paper) or m²
    /// (OpenFedLLM mode), elementwise. Must return a new tensor and leave its arguments unchanged.</summary>
    protected abstract Tensor SecondMoment(Tensor previous, Tensor squared);

    /// <inheritdoc/>
    public ClientInstructions ConfigureTrain(int round, double learningRate)
    {
        roundScale = Options.ServerLearningRateScale(learningRate);
        return new(round, learningRate);
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        state.CheckFits(global);
        bool openFedLlm = Options.OpenFedLlmCompatible;
        double beta1 = Options.Beta1, tau = Options.Tau, eta = ServerLearningRate * roundScale;
        // Named scalars for the whole aggregation (see Runtime.Scalars).
        using var beta1Scalar = beta1.ToScalar();
        using var oneMinusBeta1 = (1 - beta1).ToScalar();
        using var tauScalar = tau.ToScalar();
        using var tauSquared = (tau * tau).ToScalar();
        using var etaScalar = eta.ToScalar();
        var one = Runtime.Scalars.One;

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var weights = openFedLlm ? Enumerable.Repeat(1.0, updates.Count).ToArray() : Averaging.ExampleCounts(updates);
        var delta = Averaging.WeightedMeanOfDifferences(ClientTensors.WeightsOf(updates), weights, global);

        bool first = state.IsEmpty;
        var firstMoment = new Dictionary<string, Tensor>(global.Count);
        var secondMoment = new Dictionary<string, Tensor>(global.Count);
        var next = new Dictionary<string, Tensor>(global.Count);
        foreach (var (key, x) in global)
        {
            using var keyScope = torch.NewDisposeScope(); // one key's temporaries at a time
            var working = TensorMaps.WorkingType(x.dtype);
            var d = delta[key].to(working);
            var previousM = first ? torch.zeros(x.shape, working, x.device) : state[FirstMomentSlot][key];
            var previousV = first ? torch.full(x.shape, tauSquared, working, x.device) : state[SecondMomentSlot][key];

            var m = openFedLlm && (first || !OpenFedLlmKeepsMomentum)
                ? d.clone()
                : previousM.mul(beta1Scalar).add(d, oneMinusBeta1);
            var v = SecondMoment(previousV, openFedLlm ? m.square() : d.square());
            var x1 = x.to(working).add(m.mul(etaScalar).div(v.sqrt().add(tauScalar, one)), one).to(x.dtype);

            firstMoment[key] = m.MoveToOuterDisposeScope();
            secondMoment[key] = v.MoveToOuterDisposeScope();
            next[key] = x1.MoveToOuterDisposeScope();
        }

        state.Commit(new Dictionary<string, Dictionary<string, Tensor>>
        {
            [FirstMomentSlot] = firstMoment,
            [SecondMomentSlot] = secondMoment,
        });
        foreach (var tensor in next.Values) tensor.MoveToOuterDisposeScope();
        return next;
    }

    /// <summary>Copies of m and v under keys "m/…" and "v/…"; empty before the first aggregation.</summary>
    public IReadOnlyDictionary<string, Tensor> State => state.Snapshot();

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state) => this.state.Load(state, Name);

    /// <summary>Frees m and v.</summary>
    public void Dispose()
    {
        state.Dispose();
        GC.SuppressFinalize(this);
    }
}
