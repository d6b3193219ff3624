using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace FedLlm.Federation.Transfer;

/// <summary>The native memory of a contiguous CPU tensor as <see cref="Memory{T}"/> of bytes, for as long as the tensor
/// lives: what lets a socket or TLS stream read into, or write from, a tensor without a managed copy.</summary>
/// <remarks>The tensor must outlive every use of <see cref="MemoryManager{T}.Memory"/> and must not be resized
/// meanwhile; nothing here keeps it alive.</remarks>
public sealed unsafe class TensorMemory : MemoryManager<byte>
{
    readonly byte* start;

    /// <summary>The tensor's size in bytes.</summary>
    public int Length { get; }

    /// <summary>Wraps <paramref name="contiguousCpu"/>'s bytes.</summary>
    public TensorMemory(Tensor contiguousCpu)
    {
        ArgumentNullException.ThrowIfNull(contiguousCpu);
        var span = contiguousCpu.bytes;
        // Native memory does not move, so the address outlives the span; the tensor keeps it allocated.
        start = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(span));
        Length = span.Length;
    }

    /// <inheritdoc/>
    public override Span<byte> GetSpan() => new(start, Length);

    /// <inheritdoc/>
    public override MemoryHandle Pin(int elementIndex = 0) => new(start + elementIndex);

    /// <inheritdoc/>
    public override void Unpin() { }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing) { }
}
