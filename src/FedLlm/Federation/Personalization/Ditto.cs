using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Strategies;
using static TorchSharp.torch;

namespace FedLlm.Federation.Personalization;

/// <summary>
/// Ditto: each client trains the global adapter w as in FedAvg and, alongside it, a personal adapter v on its own data
/// with the regulariser (λ/2)·‖v − w‖² towards the global adapter it received; the server averages the w updates only.
/// </summary>
/// <remarks>
/// Li, Hu, Beirami, Smith, "Ditto: Fair and Robust Federated Learning Through Personalization", ICML 2021
/// (arXiv:2012.04221), Algorithm 1: per round, the sampled client k runs local steps on w from w^t (sent back) and local
/// steps on v_k with ∇F_k(v_k) + λ(v_k − w^t), keeping v_k. Here both trainings run <see cref="ClientRoundContext.LocalSteps"/>
/// steps at the round's learning rate (the paper's s steps on v), with fresh AdamW moments as every local training here;
/// v_k starts from the first global adapter the client receives. The server step is FedAvg's. Stateless on the server.
/// </remarks>
public sealed class Ditto(StrategyOptions options) : IFederatedStrategy
{
    /// <summary>The client hook's name (and the algorithm's).</summary>
    public const string HookName = "ditto";

    /// <summary>The instructions' key of λ.</summary>
    public const string LambdaKey = "ditto_lambda";

    readonly double lambda = Checked(options).DittoLambda;

    /// <inheritdoc/>
    public string Name => HookName;

    /// <inheritdoc/>
    public ClientInstructions ConfigureTrain(int round, double learningRate) => new(round, learningRate)
    {
        Hooks = [HookName],
        Config = new Dictionary<string, string> { [LambdaKey] = ClientInstructions.FormatNumber(lambda) },
    };

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        return FedAvg.WeightedAverage(global, updates);
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> State => new Dictionary<string, Tensor>();

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Count > 0) throw new ArgumentException($"ditto keeps no server state, but the checkpoint holds {state.Count} tensors", nameof(state));
    }

    static StrategyOptions Checked(StrategyOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return options;
    }
}

/// <summary>Ditto on the client: after the global training, trains v (state section "ditto") with (λ/2)·‖v − w^t‖².</summary>
public sealed class DittoClientHooks : IPersonalizedClientHooks
{
    /// <summary>The client state section of the personal adapter v.</summary>
    public const string Section = "ditto";

    /// <inheritdoc/>
    public string Name => Ditto.HookName;

    /// <inheritdoc/>
    public void BeforeTraining(ClientRoundContext context)
    {
    }

    /// <inheritdoc/>
    public void AfterTraining(ClientRoundContext context)
    {
        double lambda = context.Instructions.Number(Ditto.LambdaKey);
        var held = context.State.Section(Section);
        var start = held.Count > 0 ? held : context.Global;
        // The regulariser pulls the live parameters (v while the second training runs) towards w^t, the global received.
        var pairs = context.Trainable.Select(p => (p.Parameter, context.Global[p.Key])).ToList();
        var personal = context.TrainAnother(start, lambda > 0 ? () => FedProx.ProximalTerm(pairs, lambda) : null);
        context.Report("ditto_distance", AdapterTensors.DistanceNorm(personal, context.Global));
        context.State.ReplaceSection(Section, personal);
    }

    /// <inheritdoc/>
    public Dictionary<string, Tensor>? PersonalAdapter(IReadOnlyDictionary<string, Tensor> global, ClientState state)
    {
        var personal = state.Section(Section);
        return personal.Count == 0 ? null : AdapterTensors.Clone(personal);
    }
}
