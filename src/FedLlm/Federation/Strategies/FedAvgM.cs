using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Strategies;

/// <summary>
/// FedAvg with server momentum: the weighted pseudo-gradient Δ = Σ p_i·(y_i − x) drives heavy-ball momentum on the
/// server, m ← β·m + Δ, x ← x + η_s·m (m starts at 0, so with η_s = 1 the first round is FedAvg).
/// </summary>
/// <remarks>
/// <para>Hsu, Qi, Brown, "Measuring the Effects of Non-Identical Data Distribution for Federated Visual
/// Classification", arXiv:1909.06335 (2019), section 3 (v ← βv + Δw; w ← w − v), written with the server learning rate
/// η_s of Reddi et al. (2021); defaults β = 0.9, η_s = 1.</para>
/// <para>With <see cref="StrategyOptions.OpenFedLlmCompatible"/>: m ← Δ in the first round, then m ← β·m + (1 − β)·Δ
/// (damped, an exponential average rather than a sum), and x ← x + m with no server learning rate, as OpenFedLLM's
/// fed_global.py. Its damped m takes steps about (1 − β) times smaller than the paper's after the first round.</para>
/// <para>State: m under keys "m/…". Arithmetic in float32 (float64 for float64 adapters), see <see cref="TensorMaps"/>.</para>
/// </remarks>
public sealed class FedAvgM : IFederatedStrategy, IDisposable
{
    const string MomentumSlot = "m";
    readonly double beta;
    readonly double serverLearningRate;
    readonly bool openFedLlm;
    readonly ServerState state = new(MomentumSlot);
    readonly StrategyOptions options;
    double roundScale = 1.0; // this round's factor on η_s (the clients' schedule, when the decay is on)

    /// <summary>Creates FedAvgM with β = <see cref="StrategyOptions.ServerMomentum"/> and η_s =
    /// <see cref="StrategyOptions.ServerLearningRate"/> (default 1).</summary>
    /// <exception cref="ArgumentException">A server learning rate is set in OpenFedLLM mode, which has none.</exception>
    public FedAvgM(StrategyOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        openFedLlm = options.OpenFedLlmCompatible;
        if (openFedLlm && options.ServerLearningRate is { } eta && eta != 1.0)
            throw new ArgumentException(
                $"OpenFedLLM's FedAvgM has no server learning rate (x ← x + m); leave {nameof(StrategyOptions.ServerLearningRate)} unset instead of {eta}",
                nameof(options));
        this.options = options;
        beta = options.ServerMomentum;
        serverLearningRate = options.ServerLearningRate ?? StrategyOptions.DefaultFedAvgMServerLearningRate;
    }

    /// <inheritdoc/>
    public string Name => "fedavgm";

    /// <inheritdoc/>
    public ClientInstructions ConfigureTrain(int round, double learningRate)
    {
        roundScale = options.ServerLearningRateScale(learningRate);
        return new(round, learningRate);
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        state.CheckFits(global);

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var delta = Averaging.WeightedMeanOfDifferences(ClientTensors.WeightsOf(updates), Averaging.ExampleCounts(updates), global);
        // Named scalars for the whole aggregation (see Runtime.Scalars).
        using var betaScalar = beta.ToScalar();
        using var oneMinusBeta = (1 - beta).ToScalar();
        using var stepScalar = (openFedLlm ? 1.0 : serverLearningRate * roundScale).ToScalar();
        var one = Runtime.Scalars.One;
        var momentum = new Dictionary<string, Tensor>(global.Count);
        var next = new Dictionary<string, Tensor>(global.Count);
        foreach (var (key, x) in global)
        {
            using var keyScope = torch.NewDisposeScope(); // one key's temporaries at a time
            var working = TensorMaps.WorkingType(x.dtype);
            var d = delta[key].to(working);
            Tensor m;
            if (openFedLlm)
                m = state.IsEmpty ? d.clone() : state[MomentumSlot][key].mul(betaScalar).add(d, oneMinusBeta);
            else
                m = state.IsEmpty ? d.clone() : state[MomentumSlot][key].mul(betaScalar).add(d, one); // m_{-1} = 0, so m_0 = Δ
            var x1 = x.to(working).add(m, stepScalar).to(x.dtype);
            momentum[key] = m.MoveToOuterDisposeScope();
            next[key] = x1.MoveToOuterDisposeScope();
        }

        state.Commit(new Dictionary<string, Dictionary<string, Tensor>> { [MomentumSlot] = momentum });
        foreach (var tensor in next.Values) tensor.MoveToOuterDisposeScope();
        return next;
    }

    /// <summary>A copy of m under keys "m/…"; empty before the first aggregation.</summary>
    public IReadOnlyDictionary<string, Tensor> State => state.Snapshot();

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state) => this.state.Load(state, Name);

    /// <summary>Frees m.</summary>
    public void Dispose() => state.Dispose();
}
