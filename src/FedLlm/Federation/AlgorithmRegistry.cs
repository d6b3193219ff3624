namespace FedLlm.Federation;

/// <summary>
/// The federated algorithms a run can use: each a server strategy, created by name from <see cref="StrategyOptions"/>,
/// and the client hooks its instructions name. Immutable: <see cref="With(string, Func{StrategyOptions, IFederatedStrategy}, IClientHooks[])"/>
/// returns a new registry, so adding an algorithm (FedDyn, a DP client hook) never touches the built-in one
/// (<c>Strategies.StrategyFactory.BuiltIn</c>) or the core.
/// </summary>
public sealed class AlgorithmRegistry
{
    readonly IReadOnlyList<(string Name, Func<StrategyOptions, IFederatedStrategy> Create)> strategies;
    readonly IReadOnlyDictionary<string, IClientHooks> hooks;

    /// <summary>An empty registry.</summary>
    public AlgorithmRegistry() : this([], new Dictionary<string, IClientHooks>(StringComparer.Ordinal))
    {
    }

    AlgorithmRegistry(IReadOnlyList<(string, Func<StrategyOptions, IFederatedStrategy>)> strategies, IReadOnlyDictionary<string, IClientHooks> hooks)
    {
        this.strategies = strategies;
        this.hooks = hooks;
    }

    /// <summary>The algorithm names, in registration order.</summary>
    public IReadOnlyList<string> Names => strategies.Select(s => s.Name).ToList();

    /// <summary>The names of every client hook this registry can run.</summary>
    public IReadOnlyList<string> HookNames => hooks.Keys.Order(StringComparer.Ordinal).ToList();

    /// <summary>A registry with one more algorithm (lower-case name) and the client hooks its instructions use.</summary>
    /// <exception cref="ArgumentException">The name or a hook name is already taken.</exception>
    public AlgorithmRegistry With(string name, Func<StrategyOptions, IFederatedStrategy> create, params IClientHooks[] clientHooks)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(create);
        string normalized = name.Trim().ToLowerInvariant();
        if (strategies.Any(s => s.Name == normalized)) throw new ArgumentException($"algorithm '{normalized}' is already registered", nameof(name));
        var registry = new AlgorithmRegistry(strategies.Append((normalized, create)).ToList(), hooks);
        return clientHooks.Aggregate(registry, (r, h) => r.With(h));
    }

    /// <summary>A registry with one more client hook (e.g. one a strategy decorator names).</summary>
    /// <exception cref="ArgumentException">A hook of that name is already registered.</exception>
    public AlgorithmRegistry With(IClientHooks clientHooks)
    {
        ArgumentNullException.ThrowIfNull(clientHooks);
        if (hooks.ContainsKey(clientHooks.Name)) throw new ArgumentException($"client hook '{clientHooks.Name}' is already registered", nameof(clientHooks));
        var next = new Dictionary<string, IClientHooks>(hooks, StringComparer.Ordinal) { [clientHooks.Name] = clientHooks };
        return new AlgorithmRegistry(strategies, next);
    }

    /// <summary>A registry whose client hook of the same name is <paramref name="clientHooks"/> (e.g. one configured with
    /// this client's own settings).</summary>
    /// <exception cref="ArgumentException">No hook of that name is registered.</exception>
    public AlgorithmRegistry Replacing(IClientHooks clientHooks)
    {
        ArgumentNullException.ThrowIfNull(clientHooks);
        if (!hooks.ContainsKey(clientHooks.Name)) throw new ArgumentException($"no client hook '{clientHooks.Name}' to replace", nameof(clientHooks));
        var next = new Dictionary<string, IClientHooks>(hooks, StringComparer.Ordinal) { [clientHooks.Name] = clientHooks };
        return new AlgorithmRegistry(strategies, next);
    }

    /// <summary>Whether <paramref name="name"/> (case-insensitive) is a registered algorithm.</summary>
    public bool Contains(string name) => strategies.Any(s => s.Name == name.Trim().ToLowerInvariant());

    /// <summary>Validates <paramref name="options"/> and creates the named strategy (case-insensitive).</summary>
    /// <exception cref="ArgumentException">The name is unknown (the message lists the known ones), or the options are invalid.</exception>
    public IFederatedStrategy Create(string name, StrategyOptions options)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        string normalized = name.Trim().ToLowerInvariant();
        foreach (var (known, create) in strategies)
            if (known == normalized) return create(options);
        throw new ArgumentException($"unknown federated strategy '{name}'; use one of: {string.Join(", ", Names)}", nameof(name));
    }

    /// <summary>The client hook <paramref name="name"/>.</summary>
    /// <exception cref="InvalidOperationException">This client does not have it (an older build, or an algorithm it lacks).</exception>
    public IClientHooks Hook(string name) =>
        hooks.TryGetValue(name, out var hook) ? hook
            : throw new InvalidOperationException(
                $"the server asks for client hook '{name}', which this client does not have (it has: {(hooks.Count == 0 ? "none" : string.Join(", ", HookNames))}); run the same FedLlm build, with the same algorithms registered, on both sides");
}
