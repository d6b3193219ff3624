using FedLlm.Federation.Strategies;

namespace FedLlm.Federation;

/// <summary>
/// Turns an algorithm name from the configuration or command line into a strategy. This is the only place that looks
/// strategies up by name; everything past it holds an <see cref="IFederatedStrategy"/>.
/// </summary>
public static class StrategyFactory
{
    static readonly (string Name, Func<StrategyOptions, IFederatedStrategy> Create)[] Known =
    {
        ("fedavg", _ => new FedAvg()),
        ("fedprox", o => new FedProx(o)),
        ("scaffold", o => new Scaffold(o)),
        ("fedavgm", o => new FedAvgM(o)),
        ("fedadagrad", o => new FedAdagrad(o)),
        ("fedyogi", o => new FedYogi(o)),
        ("fedadam", o => new FedAdam(o)),
    };

    /// <summary>The seven algorithm names, in the order the documentation lists them.</summary>
    public static IReadOnlyList<string> Names { get; } = Known.Select(k => k.Name).ToArray();

    /// <summary>Validates <paramref name="options"/> and creates the named strategy (case-insensitive).</summary>
    /// <exception cref="ArgumentException">The name is unknown (the message lists the seven), or the options are invalid.</exception>
    public static IFederatedStrategy Create(string name, StrategyOptions options)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        string normalized = name.Trim().ToLowerInvariant();
        foreach (var (known, create) in Known)
            if (known == normalized) return create(options);
        throw new ArgumentException(
            $"unknown federated strategy '{name}'; use one of: {string.Join(", ", Names)}", nameof(name));
    }
}
