using static TorchSharp.torch;

namespace FedLlm.Checkpoints;

/// <summary>Raw access to a tensor's native memory in bounded pieces, without copying it to the managed heap.</summary>
internal static class TensorMemory
{
    /// <summary>
    /// Largest piece of a tensor handled at once. It bounds the extra memory of a dtype-converting read (one source-typed
    /// buffer this big) and of writing a non-contiguous tensor; for plain reads and writes it only sets the I/O size.
    /// </summary>
    internal const int DefaultChunkBytes = 8 << 20;

    internal delegate void PieceVisitor(Span<byte> bytes, long firstElement);

    /// <summary>Visits the memory of a contiguous CPU tensor in order, <paramref name="elementsPerPiece"/> elements at a time.</summary>
    /// <remarks>
    /// TorchSharp's <c>Tensor.bytes</c> is a span over the native buffer (no copy), but a span is int-indexed, so an
    /// embedding matrix over 2 GiB has to be taken in pieces anyway. <c>narrow</c> on a flat view gives each piece its
    /// own data pointer, which <c>bytes</c> then exposes.
    /// </remarks>
    internal static void ForEachPiece(Tensor contiguousCpu, long elementsPerPiece, PieceVisitor visit)
    {
        long count = contiguousCpu.numel();
        if (count == 0)
        {
            return;
        }
        using var flat = contiguousCpu.view(-1); // (numel,) alias of the same memory; a scalar becomes (1,)
        for (long start = 0; start < count; start += elementsPerPiece)
        {
            long length = Math.Min(elementsPerPiece, count - start);
            using var piece = flat.narrow(0, start, length);
            visit(piece.bytes, start);
        }
    }

    /// <summary>The address of a contiguous CPU tensor's first element, valid while the tensor lives.</summary>
    /// <remarks>Through a one-element view: <c>bytes</c> of the whole tensor would refuse one over 2 GiB.</remarks>
    internal static unsafe nint Address(Tensor contiguousCpu)
    {
        using var flat = contiguousCpu.view(-1);          // (numel,)
        using var firstElement = flat.narrow(0, 0, 1);    // (1,)
        fixed (byte* start = firstElement.bytes) return (nint)start;
    }

    /// <summary>Elements of <paramref name="elementSize"/> bytes that fit in one chunk (at least one).</summary>
    internal static long ElementsPerChunk(int chunkBytes, long elementSize) => Math.Max(1, chunkBytes / elementSize);
}
