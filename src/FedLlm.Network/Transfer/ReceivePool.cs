using static TorchSharp.torch;

namespace FedLlm.Network.Transfer;

/// <summary>
/// The memory of tensors received in earlier rounds, kept for the next round's: an fp32 tensor its owner is done with
/// (the server's released updates, <see cref="Server.RemoteClients.Release"/>; a client's last global) is handed to the
/// decoder of a later transfer of the same shape, which writes into it instead of into a new tensor; and a round's
/// bf16/fp16 encoding of the global (<see cref="EncodedTensors"/>) goes back for the next round's encoding.
/// </summary>
/// <remarks>
/// Why: a new tensor is fresh pages that the kernel faults in and zeroes one by one as the upload is written into them;
/// on a virtual machine that first touch costs more than receiving the bytes (bench/README.md, "The bulk channel"). A
/// pooled tensor's pages are already the process's. Safe because only tensors nothing refers to any more are returned
/// (a released update, by <see cref="FedLlm.Federation.IClientExecutor.Release"/>'s contract; a client's global once
/// its task is over): their owners used to free them at the same point. Bounded by <see cref="CapacityBytes"/>; what
/// does not fit is freed.
/// </remarks>
public sealed class ReceivePool(long capacityBytes) : IDisposable
{
    readonly Lock gate = new();
    readonly Dictionary<string, Stack<Tensor>> free = new(StringComparer.Ordinal);
    long held;

    /// <summary>The most bytes of tensors kept.</summary>
    public long CapacityBytes { get; } = capacityBytes;

    /// <summary>Bytes of tensors kept now.</summary>
    public long HeldBytes
    {
        get
        {
            lock (gate) return held;
        }
    }

    static string Key(IEnumerable<long> shape, ScalarType dtype) => $"{dtype}:{string.Join('x', shape)}";

    static bool Keeps(ScalarType dtype) => dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16;

    /// <summary>A kept tensor of <paramref name="shape"/> and <paramref name="dtype"/> (its values are an old
    /// transfer's: the caller overwrites them), or null; the caller owns it.</summary>
    public Tensor? Rent(IEnumerable<long> shape, ScalarType dtype = ScalarType.Float32)
    {
        lock (gate)
        {
            if (!free.TryGetValue(Key(shape, dtype), out var stack) || stack.Count == 0) return null;
            var tensor = stack.Pop();
            held -= tensor.NumberOfElements * tensor.ElementSize;
            return tensor;
        }
    }

    /// <summary>A kept float32 tensor of the shape <paramref name="header"/> announces, or null (<see
    /// cref="Rent(IEnumerable{long}, ScalarType)"/>): what a decoder's destination asks for.</summary>
    public Tensor? Rent(Protocol.TensorHeader header)
    {
        ArgumentNullException.ThrowIfNull(header);
        return Rent(header.Shape);
    }

    /// <summary>Takes <paramref name="tensors"/> (the pool owns them from now on): contiguous float32, bfloat16 and
    /// float16 CPU tensors are kept while they fit, the rest freed.</summary>
    public void Return(IEnumerable<Tensor> tensors)
    {
        foreach (var tensor in tensors)
        {
            bool keep = Keeps(tensor.dtype) && tensor.device_type == TorchSharp.DeviceType.CPU && tensor.is_contiguous() && tensor.NumberOfElements > 0;
            if (keep)
            {
                long bytes = tensor.NumberOfElements * tensor.ElementSize;
                lock (gate)
                {
                    if (held + bytes <= CapacityBytes)
                    {
                        string key = Key(tensor.shape, tensor.dtype);
                        if (!free.TryGetValue(key, out var stack)) free[key] = stack = new Stack<Tensor>();
                        stack.Push(tensor);
                        held += bytes;
                        continue;
                    }
                }
            }
            tensor.Dispose();
        }
    }

    /// <summary>Frees every kept tensor.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            foreach (var stack in free.Values)
                while (stack.Count > 0) stack.Pop().Dispose();
            free.Clear();
            held = 0;
        }
    }
}
