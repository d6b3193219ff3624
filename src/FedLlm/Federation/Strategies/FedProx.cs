using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Strategies;

/// <summary>
/// FedProx: clients add the proximal term (μ/2)·‖w − w_global‖² to every micro-batch loss, which keeps their adapters
/// near the global one under heterogeneous data; the server aggregates as <see cref="FedAvg"/>.
/// </summary>
/// <remarks>
/// Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith, "Federated Optimization in Heterogeneous Networks", MLSys 2020
/// (arXiv:1812.06127), Algorithm 2. The server step is the example-weighted mean, as in OpenFedLLM (its paper's
/// analysis averages uniformly over sampled devices; with equal shards the two agree). The client side is
/// <see cref="ProximalTerm"/>, summed over the LoRA tensors only, as OpenFedLLM's SFTTrainerFedProx does. Stateless.
/// </remarks>
public sealed class FedProx : IFederatedStrategy
{
    readonly double mu;

    /// <summary>Creates FedProx with μ = <see cref="StrategyOptions.ProximalMu"/>.</summary>
    public FedProx(StrategyOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        mu = options.ProximalMu;
    }

    /// <inheritdoc/>
    public string Name => "fedprox";

    /// <summary>The client hook that adds the proximal term (<see cref="FedProxClientHooks"/>).</summary>
    public const string HookName = "fedprox";

    /// <summary>The instructions' key of μ.</summary>
    public const string MuKey = "proximal_mu";

    /// <summary>Plain local training plus the proximal term with this strategy's μ.</summary>
    public ClientInstructions ConfigureTrain(int round, double learningRate) => new(round, learningRate)
    {
        Hooks = [HookName],
        Config = new Dictionary<string, string> { [MuKey] = ClientInstructions.FormatNumber(mu) },
    };

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        return FedAvg.WeightedAverage(global, updates);
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> State => new Dictionary<string, Tensor>();

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state) => Stateless.Load(Name, state);

    /// <summary>
    /// (μ/2)·Σ_k ‖w_k − g_k‖² over the (trainable weight, global weight) pairs: a scalar differentiable with respect to
    /// each w_k (gradient μ·(w_k − g_k)); the global tensors are treated as constants.
    /// </summary>
    /// <returns>A 0-d tensor in the weights' dtype (float32 when there are no pairs), in the caller's dispose scope.</returns>
    /// <exception cref="ArgumentException">A pair's shapes differ, or μ is negative or not finite.</exception>
    public static Tensor ProximalTerm(IEnumerable<(Tensor Weight, Tensor Global)> pairs, double mu)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        if (!(mu >= 0) || double.IsInfinity(mu))
            throw new ArgumentOutOfRangeException(nameof(mu), mu, "the proximal μ must be finite and ≥ 0");
        using var scope = torch.NewDisposeScope();
        Tensor? sum = null;
        int index = 0;
        foreach (var (weight, global) in pairs)
        {
            if (!weight.shape.SequenceEqual(global.shape))
                throw new ArgumentException(
                    $"proximal pair {index}: weight shape [{string.Join(", ", weight.shape)}] differs from global [{string.Join(", ", global.shape)}]",
                    nameof(pairs));
            // Global weights are constants of the local objective; detaching keeps a live parameter passed as the
            // global from collecting gradients too.
            var squared = (weight - global.detach().to(weight.dtype)).square().sum();
            sum = sum is null ? squared : sum.add(squared, Runtime.Scalars.One);   // a named alpha (Runtime.Scalars)
            index++;
        }
        using var halfMu = (mu / 2).ToScalar();   // named, not an implicit Scalar a finalizer could free mid-call (Runtime.Scalars)
        var term = (sum ?? torch.zeros(Array.Empty<long>(), ScalarType.Float32)).mul(halfMu);
        return term.MoveToOuterDisposeScope();
    }
}

/// <summary>FedProx on the client: adds (μ/2)·‖w − x‖² over the LoRA tensors to every step's loss (μ from the
/// instructions; none when μ = 0).</summary>
public sealed class FedProxClientHooks : IClientHooks
{
    /// <inheritdoc/>
    public string Name => FedProx.HookName;

    /// <inheritdoc/>
    public void BeforeTraining(ClientRoundContext context)
    {
        double mu = context.Instructions.Number(FedProx.MuKey);
        if (mu <= 0) return;
        var pairs = context.Trainable.Select(p => (p.Parameter, context.Global[p.Key])).ToList();
        context.AddLossTerm(() => FedProx.ProximalTerm(pairs, mu));
    }

    /// <inheritdoc/>
    public void AfterTraining(ClientRoundContext context)
    {
    }
}
