using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace FedLlm.Checkpoints;

/// <summary>A tensor with NaN or infinite values where only finite ones make sense (model weights, adapters, optimizer
/// state); the message names the tensor and the file.</summary>
public sealed class NonFiniteTensorException(string file, string tensor, long count, string action)
    : Exception($"{file}: tensor '{tensor}' holds {count} non-finite value(s) (NaN or infinity); refusing to {action} it")
{
    /// <summary>The file the tensor came from or was going to.</summary>
    public string File { get; } = file;

    /// <summary>The offending tensor's name.</summary>
    public string Tensor { get; } = tensor;
}

/// <summary>Finiteness checks for tensors read from or written to disk.</summary>
public static class FiniteTensors
{
    /// <summary>True when every element is finite (always for integer and boolean tensors).</summary>
    /// <remarks>A float64 sum is finite exactly when every element is: NaN and ±∞ propagate through it, and finite fp32 or
    /// bf16 values cannot overflow a float64 accumulator. That takes one pass and no tensor-sized mask.</remarks>
    public static bool AllFinite(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!tensor.is_floating_point() || tensor.numel() == 0) return true;
        if (ExponentMask(tensor) is { } mask) return !AnyAllOnesExponent(tensor, mask);
        using var noGrad = no_grad();
        using var sum = tensor.sum(ScalarType.Float64);
        return double.IsFinite(sum.item<double>());
    }

    /// <summary>The exponent bits of a contiguous CPU float32, bfloat16 or float16 tensor, whose elements are read in
    /// place; null for any other tensor (the float64 sum checks those).</summary>
    static uint? ExponentMask(Tensor tensor) =>
        tensor.device.type != TorchSharp.DeviceType.CPU || !tensor.is_contiguous() ? null
        : tensor.dtype switch
        {
            ScalarType.Float32 => 0x7F800000u,
            ScalarType.BFloat16 => 0x7F80u,
            ScalarType.Float16 => 0x7C00u,
            _ => null,
        };

    /// <summary>Whether some element has every exponent bit set: NaN or ±∞, and nothing else is. A read-only pass over
    /// the tensor's memory, where the float64 sum first converted every element (for a model being loaded, most of the
    /// time outside reading the file), split over libtorch's intra-op thread count: a memory-mapped load does little
    /// else, so this pass (and the page faults it takes on the file's pages) is most of a same-dtype load.</summary>
    static unsafe bool AnyAllOnesExponent(Tensor tensor, uint mask)
    {
        const long PerTask = 1L << 22; // elements; a span is int-indexed
        long count = tensor.numel();
        bool wide = tensor.element_size() == 4;
        nint start = TensorMemory.Address(tensor);
        int found = 0;
        var options = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, get_num_threads()) };
        Parallel.For(0L, (count + PerTask - 1) / PerTask, options, (task, loop) =>
        {
            long first = task * PerTask;
            int length = (int)Math.Min(PerTask, count - first);
            bool hit = wide
                ? AnyAllOnes(new ReadOnlySpan<uint>((uint*)start + first, length), mask)
                : AnyAllOnes(new ReadOnlySpan<ushort>((ushort*)start + first, length), (ushort)mask);
            if (hit)
            {
                Interlocked.Exchange(ref found, 1);
                loop.Stop();
            }
        });
        return found != 0;
    }

    /// <summary>Whether <paramref name="bytes"/>, elements of <paramref name="dtype"/> in memory order, hold a NaN or an
    /// infinity: the exponent-bit test of <see cref="AllFinite"/> on a span (a chunk of a file being loaded), on the
    /// calling thread. False for integer and boolean types.</summary>
    /// <exception cref="ArgumentException">A floating-point type the test does not know (complex types).</exception>
    internal static bool AnyNonFinite(ReadOnlySpan<byte> bytes, ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => AnyAllOnes(MemoryMarshal.Cast<byte, uint>(bytes), 0x7F800000u),
        ScalarType.BFloat16 => AnyAllOnes(MemoryMarshal.Cast<byte, ushort>(bytes), (ushort)0x7F80),
        ScalarType.Float16 => AnyAllOnes(MemoryMarshal.Cast<byte, ushort>(bytes), (ushort)0x7C00),
        ScalarType.Float64 => AnyAllOnes(MemoryMarshal.Cast<byte, ulong>(bytes), 0x7FF0000000000000ul),
        ScalarType.Byte or ScalarType.Int8 or ScalarType.Int16 or ScalarType.Int32 or ScalarType.Int64 or ScalarType.Bool => false,
        _ => throw new ArgumentException($"no finiteness test for {dtype} elements", nameof(dtype)),
    };

    static bool AnyAllOnes<T>(ReadOnlySpan<T> words, T mask) where T : unmanaged, System.Numerics.IBinaryInteger<T>
    {
        int i = 0;
        var vectorMask = new System.Numerics.Vector<T>(mask);
        for (; i + System.Numerics.Vector<T>.Count <= words.Length; i += System.Numerics.Vector<T>.Count)
            if (System.Numerics.Vector.EqualsAny(new System.Numerics.Vector<T>(words.Slice(i)) & vectorMask, vectorMask)) return true;
        for (; i < words.Length; i++) if ((words[i] & mask) == mask) return true;
        return false;
    }

    /// <summary>Throws <see cref="NonFiniteTensorException"/> unless every element of <paramref name="tensor"/> is finite.</summary>
    /// <param name="action">What the caller refuses to do, e.g. "load" or "write".</param>
    /// <param name="tensor">The tensor to check.</param>
    /// <param name="name">Its name, for the message.</param>
    /// <param name="file">The file it belongs to, for the message.</param>
    public static void Require(Tensor tensor, string name, string file, string action)
    {
        if (AllFinite(tensor)) return;
        using var noGrad = no_grad();
        using var finite = tensor.isfinite();
        using var bad = finite.logical_not().sum();
        throw new NonFiniteTensorException(file, name, bad.item<long>(), action);
    }
}
