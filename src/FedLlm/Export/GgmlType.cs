namespace FedLlm.Export;

/// <summary>The ggml tensor types FedLlm writes into GGUF files; the values are ggml's enum ggml_type.</summary>
public enum GgmlType : uint
{
    /// <summary>32-bit float, 4 bytes per weight (norms, and what the user asks for as f32).</summary>
    F32 = 0,

    /// <summary>16-bit IEEE half, 2 bytes per weight.</summary>
    F16 = 1,

    /// <summary>Blocks of 32 weights: one fp16 scale d, then 32 int8 q; a weight is d·q.</summary>
    Q8_0 = 8,
}

/// <summary>Sizes of the <see cref="GgmlType"/> layouts.</summary>
public static class GgmlTypes
{
    /// <summary>Weights per block (1 for the float types).</summary>
    public static int BlockSize(this GgmlType type) => type == GgmlType.Q8_0 ? Q80.BlockSize : 1;

    /// <summary>Bytes of <paramref name="elements"/> weights stored as <paramref name="type"/>.</summary>
    public static long ByteCount(this GgmlType type, long elements) => type switch
    {
        GgmlType.F32 => elements * 4,
        GgmlType.F16 => elements * 2,
        GgmlType.Q8_0 => elements / Q80.BlockSize * Q80.BlockBytes,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };
}
