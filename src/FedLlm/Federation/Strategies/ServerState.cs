using FedLlm.Federation.Aggregation;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Strategies;

/// <summary>
/// The long-lived server tensors of a stateful strategy, in named slots ("m", "v", "c"), each keyed like the adapter.
/// Checkpoint keys are "slot/adapter-key", e.g. "m/base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".
/// </summary>
/// <remarks>
/// All slots are created together on the first aggregation (only then is the adapter's layout known) and replaced
/// together by <see cref="Commit"/>, after the round's arithmetic has succeeded, so a failed round leaves the state as
/// it was. The tensors are detached from every dispose scope and freed when replaced or on <see cref="Dispose"/>.
/// </remarks>
internal sealed class ServerState : IDisposable
{
    readonly string[] slots;
    Dictionary<string, Dictionary<string, Tensor>>? tensors;

    public ServerState(params string[] slots) => this.slots = slots;

    /// <summary>True before the first aggregation (or after loading an empty state): the algorithm's initial state.</summary>
    public bool IsEmpty => tensors is null;

    /// <summary>One slot's tensors; only valid when not <see cref="IsEmpty"/>.</summary>
    public IReadOnlyDictionary<string, Tensor> this[string slot] =>
        (tensors ?? throw new InvalidOperationException("server state is empty"))[slot];

    /// <summary>Throws unless every slot has the global's keys and shapes, in the working dtype of the global's.</summary>
    public void CheckFits(IReadOnlyDictionary<string, Tensor> global)
    {
        if (tensors is null) return;
        foreach (var (slot, map) in tensors)
        {
            foreach (var (key, like) in global)
            {
                if (!map.TryGetValue(key, out var held))
                    throw new AggregationException($"server state '{slot}' has no tensor '{key}' of the global adapter", "server state", key);
                var working = TensorMaps.WorkingType(like.dtype);
                if (!held.shape.SequenceEqual(like.shape) || held.dtype != working)
                    throw new AggregationException(
                        $"server state '{slot}/{key}' is {held.dtype} [{string.Join(", ", held.shape)}], the global needs {working} [{string.Join(", ", like.shape)}]",
                        "server state", key);
            }
            foreach (var key in map.Keys)
                if (!global.ContainsKey(key))
                    throw new AggregationException($"server state '{slot}' has tensor '{key}', which the global adapter lacks", "server state", key);
        }
    }

    /// <summary>Replaces every slot, taking ownership of the new tensors (detached from any dispose scope).</summary>
    public void Commit(IReadOnlyDictionary<string, Dictionary<string, Tensor>> next)
    {
        foreach (var slot in slots)
            if (!next.ContainsKey(slot)) throw new InvalidOperationException($"commit lacks slot '{slot}'");
        foreach (var map in next.Values)
            foreach (var tensor in map.Values) tensor.DetachFromDisposeScope();
        var old = tensors;
        tensors = slots.ToDictionary(s => s, s => next[s]);
        DisposeAll(old);
    }

    /// <summary>A copy of the state under "slot/key" names, owned by the caller; empty before the first aggregation.</summary>
    public Dictionary<string, Tensor> Snapshot()
    {
        var snapshot = new Dictionary<string, Tensor>();
        if (tensors is null) return snapshot;
        using var noGrad = torch.no_grad();
        foreach (var slot in slots)
            foreach (var (key, tensor) in tensors[slot])
                snapshot[$"{slot}/{key}"] = tensor.clone();
        return snapshot;
    }

    /// <summary>Replaces the state with a copy of a <see cref="Snapshot"/>; an empty one resets to the initial state.</summary>
    /// <exception cref="ArgumentException">A key has no known slot prefix, or the slots do not hold the same keys.</exception>
    public void Load(IReadOnlyDictionary<string, Tensor> state, string strategyName)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Count == 0)
        {
            DisposeAll(tensors);
            tensors = null;
            return;
        }
        var parsed = slots.ToDictionary(s => s, _ => new Dictionary<string, Tensor>());
        foreach (var (name, tensor) in state)
        {
            int slash = name.IndexOf('/');
            if (slash <= 0 || !parsed.ContainsKey(name[..slash]))
                throw new ArgumentException(
                    $"{strategyName} state key '{name}' does not start with one of: {string.Join(", ", slots.Select(s => s + "/"))}", nameof(state));
            parsed[name[..slash]][name[(slash + 1)..]] = tensor;
        }
        foreach (var slot in slots.Skip(1))
            if (!parsed[slot].Keys.ToHashSet().SetEquals(parsed[slots[0]].Keys))
                throw new ArgumentException($"{strategyName} state slots '{slots[0]}' and '{slot}' hold different keys", nameof(state));

        using var noGrad = torch.no_grad();
        var copies = parsed.ToDictionary(
            kv => kv.Key,
            kv => kv.Value.ToDictionary(t => t.Key, t => t.Value.detach().clone().DetachFromDisposeScope()));
        DisposeAll(tensors);
        tensors = copies;
    }

    public void Dispose()
    {
        DisposeAll(tensors);
        tensors = null;
    }

    static void DisposeAll(Dictionary<string, Dictionary<string, Tensor>>? maps)
    {
        if (maps is null) return;
        foreach (var map in maps.Values)
            foreach (var tensor in map.Values) tensor.Dispose();
    }
}
