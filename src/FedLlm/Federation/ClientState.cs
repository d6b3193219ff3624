using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>
/// What one client carries from round to round: name-keyed tensors in sections ("control/…" for SCAFFOLD's c_i,
/// "adamw/…" for kept optimizer moments, a hook's own prefix for anything new). The client owns the tensors; the
/// stores (simulation checkpoints, a network client's state folder) save and restore the flat map as it is.
/// </summary>
public sealed class ClientState : IDisposable
{
    readonly Dictionary<string, Tensor> tensors = new(StringComparer.Ordinal);

    /// <summary>A state from saved tensors, which it takes over (keys as <see cref="Tensors"/> lists them).</summary>
    public static ClientState FromTensors(IEnumerable<KeyValuePair<string, Tensor>> saved)
    {
        var state = new ClientState();
        foreach (var (key, value) in saved) state.tensors[key] = value.DetachFromDisposeScope();
        return state;
    }

    /// <summary>Every tensor under its full key ("control/base_model.model…"); the state still owns them.</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors => tensors;

    /// <summary>The tensors of <paramref name="section"/>, keyed without the "section/" prefix (empty when there are none).</summary>
    public IReadOnlyDictionary<string, Tensor> Section(string section)
    {
        string prefix = section + "/";
        return tensors.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value, StringComparer.Ordinal);
    }

    /// <summary>Replaces <paramref name="section"/> with <paramref name="values"/>, which the state takes over; the old
    /// tensors of the section are freed.</summary>
    public void ReplaceSection(string section, IReadOnlyDictionary<string, Tensor> values)
    {
        string prefix = section + "/";
        foreach (var key in tensors.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToList())
        {
            tensors[key].Dispose();
            tensors.Remove(key);
        }
        foreach (var (key, value) in values) tensors[prefix + key] = value.DetachFromDisposeScope();
    }

    /// <summary>A whole number kept under <paramref name="key"/> (a 1-element int64 tensor), or null.</summary>
    public long? Counter(string key) => tensors.TryGetValue(key, out var t) ? t.item<long>() : null;

    /// <summary>Sets the whole number under <paramref name="key"/>.</summary>
    public void SetCounter(string key, long value)
    {
        if (tensors.Remove(key, out var old)) old.Dispose();
        tensors[key] = tensor(new[] { value }).DetachFromDisposeScope();
    }

    /// <summary>Frees every tensor.</summary>
    public void Dispose()
    {
        foreach (var t in tensors.Values) t.Dispose();
        tensors.Clear();
    }
}
