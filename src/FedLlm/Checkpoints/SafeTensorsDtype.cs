using static TorchSharp.torch;

namespace FedLlm.Checkpoints;

/// <summary>
/// Element types a safetensors file can hold that FedLlm reads and writes. The member names are the exact strings of
/// the header's <c>dtype</c> field.
/// </summary>
/// <remarks>
/// The format defines more (U16/U32/U64, F8_E4M3, F8_E5M2, complex, sub-byte types); Llama checkpoints and PEFT adapters
/// use none of them, and TorchSharp has no tensor type for most, so a file using one is rejected at open with its name.
/// </remarks>
public enum SafeTensorsDtype
{
    /// <summary>IEEE 754 double.</summary>
    F64,

    /// <summary>IEEE 754 single.</summary>
    F32,

    /// <summary>IEEE 754 half.</summary>
    F16,

    /// <summary>bfloat16: the top 16 bits of an F32.</summary>
    BF16,

    /// <summary>Signed 64-bit integer.</summary>
    I64,

    /// <summary>Signed 32-bit integer.</summary>
    I32,

    /// <summary>Signed 16-bit integer.</summary>
    I16,

    /// <summary>Signed 8-bit integer.</summary>
    I8,

    /// <summary>Unsigned 8-bit integer.</summary>
    U8,

    /// <summary>Boolean, one byte per element (0 or 1).</summary>
    BOOL,
}

/// <summary>Sizes and TorchSharp mappings for <see cref="SafeTensorsDtype"/>.</summary>
public static class SafeTensorsDtypes
{
    /// <summary>Bytes per element on disk (and in a TorchSharp tensor of the matching type).</summary>
    public static int ElementSize(this SafeTensorsDtype dtype) => dtype switch
    {
        SafeTensorsDtype.F64 or SafeTensorsDtype.I64 => 8,
        SafeTensorsDtype.F32 or SafeTensorsDtype.I32 => 4,
        SafeTensorsDtype.F16 or SafeTensorsDtype.BF16 or SafeTensorsDtype.I16 => 2,
        SafeTensorsDtype.I8 or SafeTensorsDtype.U8 or SafeTensorsDtype.BOOL => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Not a safetensors dtype."),
    };

    /// <summary>The TorchSharp element type with the same bit layout.</summary>
    public static ScalarType ToScalarType(this SafeTensorsDtype dtype) => dtype switch
    {
        SafeTensorsDtype.F64 => ScalarType.Float64,
        SafeTensorsDtype.F32 => ScalarType.Float32,
        SafeTensorsDtype.F16 => ScalarType.Float16,
        SafeTensorsDtype.BF16 => ScalarType.BFloat16,
        SafeTensorsDtype.I64 => ScalarType.Int64,
        SafeTensorsDtype.I32 => ScalarType.Int32,
        SafeTensorsDtype.I16 => ScalarType.Int16,
        SafeTensorsDtype.I8 => ScalarType.Int8,
        SafeTensorsDtype.U8 => ScalarType.Byte,
        SafeTensorsDtype.BOOL => ScalarType.Bool,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Not a safetensors dtype."),
    };

    /// <summary>The safetensors dtype for a TorchSharp element type, or false for one the format (as supported here) cannot store.</summary>
    public static bool TryFromScalarType(ScalarType type, out SafeTensorsDtype dtype)
    {
        switch (type)
        {
            case ScalarType.Float64: dtype = SafeTensorsDtype.F64; return true;
            case ScalarType.Float32: dtype = SafeTensorsDtype.F32; return true;
            case ScalarType.Float16: dtype = SafeTensorsDtype.F16; return true;
            case ScalarType.BFloat16: dtype = SafeTensorsDtype.BF16; return true;
            case ScalarType.Int64: dtype = SafeTensorsDtype.I64; return true;
            case ScalarType.Int32: dtype = SafeTensorsDtype.I32; return true;
            case ScalarType.Int16: dtype = SafeTensorsDtype.I16; return true;
            case ScalarType.Int8: dtype = SafeTensorsDtype.I8; return true;
            case ScalarType.Byte: dtype = SafeTensorsDtype.U8; return true;
            case ScalarType.Bool: dtype = SafeTensorsDtype.BOOL; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>The safetensors dtype for a TorchSharp element type.</summary>
    /// <exception cref="ArgumentException">The type (complex, quantized) has no safetensors dtype here.</exception>
    public static SafeTensorsDtype FromScalarType(ScalarType type) =>
        TryFromScalarType(type, out var dtype)
            ? dtype
            : throw new ArgumentException($"TorchSharp type {type} has no safetensors dtype FedLlm can write.", nameof(type));

    /// <summary>
    /// Parses a header <c>dtype</c> string. Exact and case-sensitive, as the format is: <c>"f32"</c> or <c>"1"</c> are
    /// not dtypes, which <see cref="Enum.TryParse{TEnum}(string, out TEnum)"/> would accept.
    /// </summary>
    public static bool TryParse(string text, out SafeTensorsDtype dtype)
    {
        ArgumentNullException.ThrowIfNull(text);
        switch (text)
        {
            case "F64": dtype = SafeTensorsDtype.F64; return true;
            case "F32": dtype = SafeTensorsDtype.F32; return true;
            case "F16": dtype = SafeTensorsDtype.F16; return true;
            case "BF16": dtype = SafeTensorsDtype.BF16; return true;
            case "I64": dtype = SafeTensorsDtype.I64; return true;
            case "I32": dtype = SafeTensorsDtype.I32; return true;
            case "I16": dtype = SafeTensorsDtype.I16; return true;
            case "I8": dtype = SafeTensorsDtype.I8; return true;
            case "U8": dtype = SafeTensorsDtype.U8; return true;
            case "BOOL": dtype = SafeTensorsDtype.BOOL; return true;
            default: dtype = default; return false;
        }
    }
}
