using FedLlm.Federation;

namespace FedLlm.Privacy;

/// <summary>Adds a decorator's client hook and config keys to an inner strategy's instructions.</summary>
internal static class ClientHookInstructions
{
    /// <summary><paramref name="inner"/> with <paramref name="hook"/> run after its own hooks (so it sees, and may replace,
    /// the update they leave) and <paramref name="config"/> added to its config.</summary>
    /// <exception cref="InvalidOperationException">A key is already set by the inner strategy.</exception>
    public static ClientInstructions Append(ClientInstructions inner, string hook, IReadOnlyDictionary<string, string> config)
    {
        var merged = new Dictionary<string, string>(inner.Config, StringComparer.Ordinal);
        foreach (var (key, value) in config)
            if (!merged.TryAdd(key, value))
                throw new InvalidOperationException($"client hook '{hook}': the inner strategy already sets instruction key '{key}'");
        return inner with { Hooks = [.. inner.Hooks, hook], Config = merged };
    }
}
