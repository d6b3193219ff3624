namespace FedLlm.Federation.Strategies;

/// <summary>
/// The seven built-in algorithms by name, with their client hooks. This is the only place that lists them; everything
/// past it holds an <see cref="IFederatedStrategy"/>. To add one, extend <see cref="BuiltIn"/> with
/// <see cref="AlgorithmRegistry.With(string, Func{StrategyOptions, IFederatedStrategy}, IClientHooks[])"/> and pass the
/// new registry to the run.
/// </summary>
public static class StrategyFactory
{
    /// <summary>FedAvg, FedProx, SCAFFOLD, FedAvgM, FedAdagrad, FedYogi and FedAdam, in the order the documentation lists them.</summary>
    public static AlgorithmRegistry BuiltIn { get; } = new AlgorithmRegistry()
        .With("fedavg", _ => new FedAvg())
        .With("fedprox", o => new FedProx(o), new FedProxClientHooks())
        .With("scaffold", o => new Scaffold(o), new ScaffoldClientHooks())
        .With("fedavgm", o => new FedAvgM(o))
        .With("fedadagrad", o => new FedAdagrad(o))
        .With("fedyogi", o => new FedYogi(o))
        .With("fedadam", o => new FedAdam(o));

    /// <summary>The seven algorithm names, in the order the documentation lists them.</summary>
    public static IReadOnlyList<string> Names => BuiltIn.Names;

    /// <summary>Validates <paramref name="options"/> and creates the named built-in strategy (case-insensitive).</summary>
    /// <exception cref="ArgumentException">The name is unknown (the message lists the seven), or the options are invalid.</exception>
    public static IFederatedStrategy Create(string name, StrategyOptions options) => BuiltIn.Create(name, options);
}
