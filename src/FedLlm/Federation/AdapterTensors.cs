using FedLlm.Modeling;
using FedLlm.Peft;
using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>Name-keyed adapter tensors (PEFT keys) moving between a model and the federation.</summary>
public static class AdapterTensors
{
    /// <summary>Detached copies of the model's adapter weights, owned by the caller.</summary>
    public static Dictionary<string, Tensor> Snapshot(LlamaForCausalLM model)
    {
        using var noGrad = no_grad();
        return AdapterIO.State(model).ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
    }

    /// <summary>Copies <paramref name="state"/> into the model's adapters; keys and shapes must match exactly.</summary>
    public static void Load(LlamaForCausalLM model, IReadOnlyDictionary<string, Tensor> state)
    {
        var live = AdapterIO.State(model);
        if (live.Count != state.Count || live.Keys.Any(k => !state.ContainsKey(k)))
            throw new InvalidOperationException($"adapter state has {state.Count} tensors, the model {live.Count}; first missing: {live.Keys.FirstOrDefault(k => !state.ContainsKey(k))}");
        using var noGrad = no_grad();
        foreach (var (key, parameter) in live) parameter.copy_(state[key]);
    }

    /// <summary>Detached copies of <paramref name="state"/>, on the same devices, owned by the caller.</summary>
    public static Dictionary<string, Tensor> Clone(IReadOnlyDictionary<string, Tensor> state)
    {
        using var noGrad = no_grad();
        return state.ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
    }

    /// <summary>Zero tensors of the same keys, shapes, dtypes and devices, owned by the caller.</summary>
    public static Dictionary<string, Tensor> ZerosLike(IReadOnlyDictionary<string, Tensor> state) =>
        state.ToDictionary(kv => kv.Key, kv => zeros_like(kv.Value, device: kv.Value.device).DetachFromDisposeScope());

    /// <summary>‖a − b‖₂ over all tensors.</summary>
    public static double DistanceNorm(IReadOnlyDictionary<string, Tensor> a, IReadOnlyDictionary<string, Tensor> b)
    {
        double sum = 0;
        // Each tensor's temporaries are freed before the next one's are made: a scope around the loop would hold a
        // float64 copy of the whole adapter (twice its fp32 size) until the end.
        foreach (var (key, tensor) in a)
        {
            using var scope = NewDisposeScope();
            var diff = (tensor - b[key]).to(ScalarType.Float64);
            diff.mul_(diff);   // x·x, what pow(2) computes, without an implicit Scalar (Runtime.Scalars)
            sum += diff.sum().item<double>();
        }
        return Math.Sqrt(sum);
    }

    /// <summary>Bytes the tensors hold in memory (elements × element size).</summary>
    public static long Bytes(IReadOnlyDictionary<string, Tensor> state) => state.Values.Sum(t => t.NumberOfElements * t.ElementSize);

    /// <summary>Disposes every tensor of <paramref name="state"/>; null is allowed and does nothing.</summary>
    public static void Dispose(IReadOnlyDictionary<string, Tensor>? state)
    {
        if (state is null) return;
        foreach (var tensor in state.Values) tensor.Dispose();
    }
}
