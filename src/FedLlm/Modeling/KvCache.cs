using static TorchSharp.torch;

namespace FedLlm.Modeling;

/// <summary>
/// Keys and values of past tokens for incremental decoding, preallocated to the longest sequence the caller will
/// reach so that each new token is a slice write instead of a reallocation of the whole cache.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] keys;   // per layer (B, kv, capacity, d)
    private readonly Tensor[] values;

    /// <summary>Allocates, for each of the model's layers, key and value buffers of (<paramref name="batchSize"/>, kv
    /// heads, <paramref name="capacity"/>, head_dim) in <paramref name="dtype"/>; the cache owns them until
    /// disposed.</summary>
    public KvCache(LlamaConfig config, long batchSize, long capacity, ScalarType dtype, Device? device = null)
    {
        Capacity = capacity;
        keys = new Tensor[config.NumHiddenLayers];
        values = new Tensor[config.NumHiddenLayers];
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = zeros(new[] { batchSize, config.NumKeyValueHeads, capacity, config.HeadDim }, dtype, device);
            values[i] = zeros(new[] { batchSize, config.NumKeyValueHeads, capacity, config.HeadDim }, dtype, device);
        }
    }

    /// <summary>The most tokens (prompt plus generated) the cache holds.</summary>
    public long Capacity { get; }

    /// <summary>Tokens already cached (the same for every layer between forward passes).</summary>
    public long Length { get; private set; }

    /// <summary>Writes this step's keys/values (B, kv, T, d) after the cached ones and returns views of all (B, kv, Length+T, d).</summary>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor newKeys, Tensor newValues)
    {
        long steps = newKeys.shape[2];
        if (Length + steps > Capacity)
            throw new InvalidOperationException($"KV cache full: {Length} + {steps} tokens exceed its capacity of {Capacity}");
        using (var keySlot = keys[layer].narrow(2, Length, steps)) keySlot.copy_(newKeys);
        using (var valueSlot = values[layer].narrow(2, Length, steps)) valueSlot.copy_(newValues);
        return (keys[layer].narrow(2, 0, Length + steps), values[layer].narrow(2, 0, Length + steps));
    }

    /// <summary>Marks <paramref name="steps"/> tokens as cached; called once per forward, after all layers appended.</summary>
    public void Advance(long steps) => Length += steps;

    /// <summary>Frees every layer's key and value buffers.</summary>
    public void Dispose()
    {
        foreach (var t in keys) t.Dispose();
        foreach (var t in values) t.Dispose();
    }
}
