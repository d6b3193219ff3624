namespace FedLlm.Checkpoints;

/// <summary>Where one tensor lives in a safetensors file, as its header declares and <see cref="SafeTensorsFile"/> validated.</summary>
/// <param name="Name">The tensor's key, e.g. <c>model.layers.0.self_attn.q_proj.weight</c>.</param>
/// <param name="Dtype">Element type on disk.</param>
/// <param name="Shape">Dimensions; empty for a scalar. Do not modify: the array is shared with the open file.</param>
/// <param name="Offset">Absolute byte offset of the first element in the file (header included).</param>
/// <param name="ByteLength">Bytes of data: the element count times the element size.</param>
public sealed record SafeTensorInfo(string Name, SafeTensorsDtype Dtype, long[] Shape, long Offset, long ByteLength)
{
    /// <summary>Number of elements: the product of <see cref="Shape"/> (1 for a scalar, 0 if any dimension is 0).</summary>
    public long ElementCount => ByteLength / Dtype.ElementSize();

    /// <summary>Shape as <c>[2, 3]</c>, for messages.</summary>
    internal static string FormatShape(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";

    /// <inheritdoc/>
    public override string ToString() => $"{Name}: {Dtype} {FormatShape(Shape)} at {Offset} ({ByteLength} bytes)";
}
